-- ncauth sql --dialect postgresql --dovecot 2.3 (from /etc/ncauth/ncauth.toml)
-- Dovecot SQL passdb (fallback mode): Dovecot fills in and escapes its variables.
-- password_query = SELECT (u.uid_lower || '@' || LOWER('%d')) AS user, CASE WHEN SUBSTR(u.password, 4, 8) = 'argon2id' THEN ('{ARGON2ID}' || SUBSTR(u.password, 3)) WHEN SUBSTR(u.password, 4, 7) = 'argon2i' THEN ('{ARGON2I}' || SUBSTR(u.password, 3)) ELSE ('{BLF-CRYPT}' || SUBSTR(u.password, 3)) END AS password, 'vmail' AS userdb_uid, 'vmail' AS userdb_gid, ('/var/vmail/' || LOWER('%d') || '/' || u.uid_lower) AS userdb_home FROM oc_users u WHERE u.uid_lower = LOWER('%n') AND LOWER('%d') IN ('example.org') AND u.uid_lower NOT IN ('', '.', '..') AND REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(u.uid_lower, '/', ''), CHR(92), ''), CHR(1), ''), CHR(9), ''), CHR(10), ''), CHR(13), '') = u.uid_lower AND SUBSTR(u.password, 1, 2) IN ('1|', '2|', '3|') AND (SUBSTR(u.password, 4, 7) = 'argon2i' OR SUBSTR(u.password, 4, 2) IN ('2y', '2a', '2b')) AND NOT EXISTS (SELECT 1 FROM oc_preferences d WHERE d.userid = u.uid AND d.appid = 'core' AND d.configkey = 'enabled' AND d.configvalue <> 'true') AND NOT EXISTS (SELECT 1 FROM oc_twofactor_providers t WHERE t.uid = u.uid AND t.enabled = 1 AND t.provider_id <> 'backup_codes')
-- user_query = SELECT 'vmail' AS uid, 'vmail' AS gid, ('/var/vmail/' || LOWER('%d') || '/' || u.uid_lower) AS home FROM oc_users u WHERE u.uid_lower = LOWER('%n') AND LOWER('%d') IN ('example.org') AND u.uid_lower NOT IN ('', '.', '..') AND REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(u.uid_lower, '/', ''), CHR(92), ''), CHR(1), ''), CHR(9), ''), CHR(10), ''), CHR(13), '') = u.uid_lower

-- Least privilege: each database user may read only the columns it needs.
-- For Dovecot's SQL passdb (dovecot_nc):
CREATE ROLE "dovecot_nc" LOGIN PASSWORD 'CHANGE-ME';  -- choose a password
GRANT CONNECT ON DATABASE "nextcloud" TO "dovecot_nc";
GRANT USAGE ON SCHEMA public TO "dovecot_nc";
GRANT SELECT (uid, uid_lower, password) ON "oc_users" TO "dovecot_nc";
GRANT SELECT (userid, appid, configkey, configvalue) ON "oc_preferences" TO "dovecot_nc";
GRANT SELECT (uid, provider_id, enabled) ON "oc_twofactor_providers" TO "dovecot_nc";
GRANT SELECT (uid, gid) ON "oc_group_user" TO "dovecot_nc";

-- For ncauth's checkpassword program and daemon (ncauth):
CREATE ROLE "ncauth" LOGIN PASSWORD 'CHANGE-ME';  -- choose a password
GRANT CONNECT ON DATABASE "nextcloud" TO "ncauth";
GRANT USAGE ON SCHEMA public TO "ncauth";
GRANT SELECT (uid, uid_lower, password) ON "oc_users" TO "ncauth";
GRANT SELECT (userid, appid, configkey, configvalue) ON "oc_preferences" TO "ncauth";
GRANT SELECT (provider_id, uid, enabled) ON "oc_twofactor_providers" TO "ncauth";
GRANT SELECT (gid, uid) ON "oc_group_user" TO "ncauth";
GRANT SELECT (id, uid, login_name, token, type, expires, password_invalid, version, password, private_key) ON "oc_authtoken" TO "ncauth";
