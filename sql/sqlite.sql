-- ncauth sql --dialect sqlite --dovecot 2.3 (from /etc/ncauth/ncauth.toml)
-- Dovecot SQL passdb (fallback mode): Dovecot fills in and escapes its variables.
-- password_query = SELECT (u.uid_lower || '@' || LOWER('%d')) AS user, CASE WHEN SUBSTR(u.password, 4, 8) = 'argon2id' THEN ('{ARGON2ID}' || SUBSTR(u.password, 3)) WHEN SUBSTR(u.password, 4, 7) = 'argon2i' THEN ('{ARGON2I}' || SUBSTR(u.password, 3)) ELSE ('{BLF-CRYPT}' || SUBSTR(u.password, 3)) END AS password, 'vmail' AS userdb_uid, 'vmail' AS userdb_gid, ('/var/vmail/' || LOWER('%d') || '/' || u.uid_lower) AS userdb_home FROM oc_users u WHERE u.uid_lower = LOWER('%n') AND LOWER('%d') IN ('example.org') AND u.uid_lower NOT IN ('', '.', '..') AND REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(u.uid_lower, '/', ''), CHAR(92), ''), CHAR(1), ''), CHAR(9), ''), CHAR(10), ''), CHAR(13), ''), CHAR(0), '') = u.uid_lower AND SUBSTR(u.password, 1, 2) IN ('1|', '2|', '3|') AND (SUBSTR(u.password, 4, 7) = 'argon2i' OR SUBSTR(u.password, 4, 2) IN ('2y', '2a', '2b')) AND NOT EXISTS (SELECT 1 FROM oc_preferences d WHERE d.userid = u.uid AND d.appid = 'core' AND d.configkey = 'enabled' AND d.configvalue <> 'true') AND NOT EXISTS (SELECT 1 FROM oc_twofactor_providers t WHERE t.uid = u.uid AND t.enabled = 1 AND t.provider_id <> 'backup_codes')
-- user_query = SELECT 'vmail' AS uid, 'vmail' AS gid, ('/var/vmail/' || LOWER('%d') || '/' || u.uid_lower) AS home FROM oc_users u WHERE u.uid_lower = LOWER('%n') AND LOWER('%d') IN ('example.org') AND u.uid_lower NOT IN ('', '.', '..') AND REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(u.uid_lower, '/', ''), CHAR(92), ''), CHAR(1), ''), CHAR(9), ''), CHAR(10), ''), CHAR(13), ''), CHAR(0), '') = u.uid_lower

-- Least privilege: each database user may read only the columns it needs.
-- For Dovecot's SQL passdb (dovecot_nc):
-- SQLite has no users or grants: give the reading user (dovecot for checkpassword, the
-- daemon's user) read access to the database file and nothing else, e.g.
--   setfacl -m u:dovecot:r /path/to/nextcloud/data/owncloud.db

-- For ncauth's checkpassword program and daemon (ncauth):
-- SQLite has no users or grants: give the reading user (dovecot for checkpassword, the
-- daemon's user) read access to the database file and nothing else, e.g.
--   setfacl -m u:dovecot:r /path/to/nextcloud/data/owncloud.db
