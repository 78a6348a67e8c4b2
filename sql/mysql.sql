-- ncauth sql --dialect mysql --dovecot 2.3 (from /etc/ncauth/ncauth.toml)
-- Dovecot SQL passdb (fallback mode): Dovecot fills in and escapes its variables.
-- password_query = SELECT CONCAT(u.uid_lower, '@', LOWER('%d')) AS user, CASE WHEN SUBSTR(u.password, 4, 8) = 'argon2id' THEN CONCAT('{ARGON2ID}', SUBSTR(u.password, 3)) WHEN SUBSTR(u.password, 4, 7) = 'argon2i' THEN CONCAT('{ARGON2I}', SUBSTR(u.password, 3)) ELSE CONCAT('{BLF-CRYPT}', SUBSTR(u.password, 3)) END AS password, 'vmail' AS userdb_uid, 'vmail' AS userdb_gid, CONCAT('/var/vmail/', LOWER('%d'), '/', u.uid_lower) AS userdb_home FROM oc_users u WHERE BINARY u.uid_lower = BINARY LOWER('%n') AND BINARY LOWER('%d') IN ('example.org') AND BINARY u.uid_lower NOT IN ('', '.', '..') AND BINARY REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(u.uid_lower, '/', ''), CHAR(92), ''), CHAR(1), ''), CHAR(9), ''), CHAR(10), ''), CHAR(13), ''), CHAR(0), '') = BINARY u.uid_lower AND SUBSTR(u.password, 1, 2) IN ('1|', '2|', '3|') AND (SUBSTR(u.password, 4, 7) = 'argon2i' OR SUBSTR(u.password, 4, 2) IN ('2y', '2a', '2b')) AND NOT EXISTS (SELECT 1 FROM oc_preferences d WHERE d.userid = u.uid AND d.appid = 'core' AND d.configkey = 'enabled' AND d.configvalue <> 'true') AND NOT EXISTS (SELECT 1 FROM oc_twofactor_providers t WHERE t.uid = u.uid AND t.enabled = 1 AND t.provider_id <> 'backup_codes')
-- user_query = SELECT 'vmail' AS uid, 'vmail' AS gid, CONCAT('/var/vmail/', LOWER('%d'), '/', u.uid_lower) AS home FROM oc_users u WHERE BINARY u.uid_lower = BINARY LOWER('%n') AND BINARY LOWER('%d') IN ('example.org') AND BINARY u.uid_lower NOT IN ('', '.', '..') AND BINARY REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(u.uid_lower, '/', ''), CHAR(92), ''), CHAR(1), ''), CHAR(9), ''), CHAR(10), ''), CHAR(13), ''), CHAR(0), '') = BINARY u.uid_lower

-- Least privilege: each database user may read only the columns it needs.
-- For Dovecot's SQL passdb (dovecot_nc):
CREATE USER IF NOT EXISTS 'dovecot_nc'@'localhost' IDENTIFIED BY 'CHANGE-ME';  -- choose a password
GRANT SELECT (uid, uid_lower, password) ON `nextcloud`.`oc_users` TO 'dovecot_nc'@'localhost';
GRANT SELECT (userid, appid, configkey, configvalue) ON `nextcloud`.`oc_preferences` TO 'dovecot_nc'@'localhost';
GRANT SELECT (uid, provider_id, enabled) ON `nextcloud`.`oc_twofactor_providers` TO 'dovecot_nc'@'localhost';
GRANT SELECT (uid, gid) ON `nextcloud`.`oc_group_user` TO 'dovecot_nc'@'localhost';

-- For ncauth's checkpassword program and daemon (ncauth):
CREATE USER IF NOT EXISTS 'ncauth'@'localhost' IDENTIFIED BY 'CHANGE-ME';  -- choose a password
GRANT SELECT (uid, uid_lower, password) ON `nextcloud`.`oc_users` TO 'ncauth'@'localhost';
GRANT SELECT (userid, appid, configkey, configvalue) ON `nextcloud`.`oc_preferences` TO 'ncauth'@'localhost';
GRANT SELECT (provider_id, uid, enabled) ON `nextcloud`.`oc_twofactor_providers` TO 'ncauth'@'localhost';
GRANT SELECT (gid, uid) ON `nextcloud`.`oc_group_user` TO 'ncauth'@'localhost';
GRANT SELECT (id, uid, login_name, token, type, expires, password_invalid, version, password, private_key) ON `nextcloud`.`oc_authtoken` TO 'ncauth'@'localhost';
