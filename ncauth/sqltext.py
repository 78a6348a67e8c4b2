"""Every statement of ``ncauth.store.statements``, as SQLAlchemy compiles it for each
driver ``oneshot.OneShotStore`` runs without SQLAlchemy; the table prefix is
``PREFIX``. Generated: do not edit; ``python tests/test_generated_files.py`` writes it
and the tests fail when it is stale."""

PREFIX = 'ncauthprefix_'
#: dialect -> the driver's paramstyle
PARAMSTYLE = {
    'mysql': 'pyformat',
    'postgresql': 'pyformat',
    'sqlite': 'qmark',
}
#: dialect -> statement name -> (SQL, positional parameter names or None, constants,
#: IN list -> the text of one value, ``{name}`` its parameter's name)
STATEMENTS: dict[str, dict[str, tuple[str, list[str] | None, dict[str, object], dict[str, str]]]] = {
    'mysql': {
        'users_by_uid_lower': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = %(appid_1)s AND ncauthprefix_preferences.configkey = %(configkey_1)s) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = %(enabled_1)s AND ncauthprefix_twofactor_providers.provider_id != %(provider_id_1)s) AS second \nFROM ncauthprefix_users \nWHERE ncauthprefix_users.uid_lower = %(uid_lower)s',
            None,
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'user_by_uid': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = %(appid_1)s AND ncauthprefix_preferences.configkey = %(configkey_1)s) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = %(enabled_1)s AND ncauthprefix_twofactor_providers.provider_id != %(provider_id_1)s) AS second \nFROM ncauthprefix_users \nWHERE ncauthprefix_users.uid = %(uid)s',
            None,
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'all_users': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = %(appid_1)s AND ncauthprefix_preferences.configkey = %(configkey_1)s) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = %(enabled_1)s AND ncauthprefix_twofactor_providers.provider_id != %(provider_id_1)s) AS second \nFROM ncauthprefix_users',
            None,
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'emails': (
            'SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.appid = %(appid_1)s AND ncauthprefix_preferences.configkey = %(configkey_1)s',
            None,
            {'appid_1': 'settings', 'configkey_1': 'email'},
            {},
        ),
        'members': (
            'SELECT ncauthprefix_group_user.uid, ncauthprefix_group_user.gid \nFROM ncauthprefix_group_user \nWHERE ncauthprefix_group_user.gid IN (__[POSTCOMPILE_gids])',
            None,
            {},
            {'gids': '%({name})s'},
        ),
        'uids_by_email': (
            "SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.appid = 'settings' AND ncauthprefix_preferences.configkey = 'email' AND lower(ncauthprefix_preferences.configvalue) = %(email)s",
            None,
            {},
            {},
        ),
        'email_of': (
            'SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = %(uid)s AND ncauthprefix_preferences.appid = %(appid_1)s AND ncauthprefix_preferences.configkey = %(configkey_1)s',
            None,
            {'appid_1': 'settings', 'configkey_1': 'email'},
            {},
        ),
        'tokens': (
            'SELECT ncauthprefix_authtoken.id, ncauthprefix_authtoken.uid, ncauthprefix_authtoken.login_name, ncauthprefix_authtoken.type, ncauthprefix_authtoken.expires, ncauthprefix_authtoken.password_invalid, ncauthprefix_authtoken.password, ncauthprefix_authtoken.private_key \nFROM ncauthprefix_authtoken \nWHERE ncauthprefix_authtoken.token IN (__[POSTCOMPILE_tokens]) AND ncauthprefix_authtoken.version = %(version_1)s \n LIMIT %(param_1)s',
            None,
            {'version_1': 2, 'param_1': 5},
            {'tokens': '%({name})s'},
        ),
        'groups_of': (
            'SELECT ncauthprefix_group_user.uid, ncauthprefix_group_user.gid \nFROM ncauthprefix_group_user \nWHERE ncauthprefix_group_user.uid = %(uid)s',
            None,
            {},
            {},
        ),
        'known_elsewhere': (
            'SELECT DISTINCT ncauthprefix_preferences.userid \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = %(uid)s \n LIMIT %(param_1)s',
            None,
            {'param_1': 50},
            {},
        ),
        'quota_of': (
            'SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = %(uid)s AND ncauthprefix_preferences.appid = %(appid_1)s AND ncauthprefix_preferences.configkey = %(configkey_1)s',
            None,
            {'appid_1': 'files', 'configkey_1': 'quota'},
            {},
        ),
        'quota_appconfig': (
            'SELECT ncauthprefix_appconfig.configkey, ncauthprefix_appconfig.configvalue \nFROM ncauthprefix_appconfig \nWHERE ncauthprefix_appconfig.appid = %(appid_1)s AND ncauthprefix_appconfig.configkey IN (__[POSTCOMPILE_configkey_1])',
            None,
            {'appid_1': 'files', 'configkey_1': ['default_quota', 'allow_unlimited_quota', 'quota_preset']},
            {'configkey_1': '%({name})s'},
        ),
    },
    'postgresql': {
        'users_by_uid_lower': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = %(appid_1)s::VARCHAR AND ncauthprefix_preferences.configkey = %(configkey_1)s::VARCHAR) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = %(enabled_1)s::SMALLINT AND ncauthprefix_twofactor_providers.provider_id != %(provider_id_1)s::VARCHAR) AS second \nFROM ncauthprefix_users \nWHERE ncauthprefix_users.uid_lower = %(uid_lower)s::VARCHAR',
            None,
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'user_by_uid': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = %(appid_1)s::VARCHAR AND ncauthprefix_preferences.configkey = %(configkey_1)s::VARCHAR) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = %(enabled_1)s::SMALLINT AND ncauthprefix_twofactor_providers.provider_id != %(provider_id_1)s::VARCHAR) AS second \nFROM ncauthprefix_users \nWHERE ncauthprefix_users.uid = %(uid)s::VARCHAR',
            None,
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'all_users': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = %(appid_1)s::VARCHAR AND ncauthprefix_preferences.configkey = %(configkey_1)s::VARCHAR) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = %(enabled_1)s::SMALLINT AND ncauthprefix_twofactor_providers.provider_id != %(provider_id_1)s::VARCHAR) AS second \nFROM ncauthprefix_users',
            None,
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'emails': (
            'SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.appid = %(appid_1)s::VARCHAR AND ncauthprefix_preferences.configkey = %(configkey_1)s::VARCHAR',
            None,
            {'appid_1': 'settings', 'configkey_1': 'email'},
            {},
        ),
        'members': (
            'SELECT ncauthprefix_group_user.uid, ncauthprefix_group_user.gid \nFROM ncauthprefix_group_user \nWHERE ncauthprefix_group_user.gid IN (__[POSTCOMPILE_gids])',
            None,
            {},
            {'gids': '%({name})s::VARCHAR'},
        ),
        'uids_by_email': (
            "SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.appid = 'settings' AND ncauthprefix_preferences.configkey = 'email' AND lower(ncauthprefix_preferences.configvalue) = %(email)s",
            None,
            {},
            {},
        ),
        'email_of': (
            'SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = %(uid)s::VARCHAR AND ncauthprefix_preferences.appid = %(appid_1)s::VARCHAR AND ncauthprefix_preferences.configkey = %(configkey_1)s::VARCHAR',
            None,
            {'appid_1': 'settings', 'configkey_1': 'email'},
            {},
        ),
        'tokens': (
            'SELECT ncauthprefix_authtoken.id, ncauthprefix_authtoken.uid, ncauthprefix_authtoken.login_name, ncauthprefix_authtoken.type, ncauthprefix_authtoken.expires, ncauthprefix_authtoken.password_invalid, ncauthprefix_authtoken.password, ncauthprefix_authtoken.private_key \nFROM ncauthprefix_authtoken \nWHERE ncauthprefix_authtoken.token IN (__[POSTCOMPILE_tokens]) AND ncauthprefix_authtoken.version = %(version_1)s::SMALLINT \n LIMIT %(param_1)s::INTEGER',
            None,
            {'version_1': 2, 'param_1': 5},
            {'tokens': '%({name})s::VARCHAR'},
        ),
        'groups_of': (
            'SELECT ncauthprefix_group_user.uid, ncauthprefix_group_user.gid \nFROM ncauthprefix_group_user \nWHERE ncauthprefix_group_user.uid = %(uid)s::VARCHAR',
            None,
            {},
            {},
        ),
        'known_elsewhere': (
            'SELECT DISTINCT ncauthprefix_preferences.userid \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = %(uid)s::VARCHAR \n LIMIT %(param_1)s::INTEGER',
            None,
            {'param_1': 50},
            {},
        ),
        'quota_of': (
            'SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = %(uid)s::VARCHAR AND ncauthprefix_preferences.appid = %(appid_1)s::VARCHAR AND ncauthprefix_preferences.configkey = %(configkey_1)s::VARCHAR',
            None,
            {'appid_1': 'files', 'configkey_1': 'quota'},
            {},
        ),
        'quota_appconfig': (
            'SELECT ncauthprefix_appconfig.configkey, ncauthprefix_appconfig.configvalue \nFROM ncauthprefix_appconfig \nWHERE ncauthprefix_appconfig.appid = %(appid_1)s::VARCHAR AND ncauthprefix_appconfig.configkey IN (__[POSTCOMPILE_configkey_1])',
            None,
            {'appid_1': 'files', 'configkey_1': ['default_quota', 'allow_unlimited_quota', 'quota_preset']},
            {'configkey_1': '%({name})s::VARCHAR'},
        ),
    },
    'sqlite': {
        'users_by_uid_lower': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = ? AND ncauthprefix_preferences.configkey = ?) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = ? AND ncauthprefix_twofactor_providers.provider_id != ?) AS second \nFROM ncauthprefix_users \nWHERE ncauthprefix_users.uid_lower = ?',
            ['appid_1', 'configkey_1', 'enabled_1', 'provider_id_1', 'uid_lower'],
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'user_by_uid': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = ? AND ncauthprefix_preferences.configkey = ?) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = ? AND ncauthprefix_twofactor_providers.provider_id != ?) AS second \nFROM ncauthprefix_users \nWHERE ncauthprefix_users.uid = ?',
            ['appid_1', 'configkey_1', 'enabled_1', 'provider_id_1', 'uid'],
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'all_users': (
            'SELECT ncauthprefix_users.uid, ncauthprefix_users.uid_lower, ncauthprefix_users.password, (SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ncauthprefix_users.uid AND ncauthprefix_preferences.appid = ? AND ncauthprefix_preferences.configkey = ?) AS enabled, (SELECT count(*) AS count_1 \nFROM ncauthprefix_twofactor_providers \nWHERE ncauthprefix_twofactor_providers.uid = ncauthprefix_users.uid AND ncauthprefix_twofactor_providers.enabled = ? AND ncauthprefix_twofactor_providers.provider_id != ?) AS second \nFROM ncauthprefix_users',
            ['appid_1', 'configkey_1', 'enabled_1', 'provider_id_1'],
            {'appid_1': 'core', 'configkey_1': 'enabled', 'enabled_1': 1, 'provider_id_1': 'backup_codes'},
            {},
        ),
        'emails': (
            'SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.appid = ? AND ncauthprefix_preferences.configkey = ?',
            ['appid_1', 'configkey_1'],
            {'appid_1': 'settings', 'configkey_1': 'email'},
            {},
        ),
        'members': (
            'SELECT ncauthprefix_group_user.uid, ncauthprefix_group_user.gid \nFROM ncauthprefix_group_user \nWHERE ncauthprefix_group_user.gid IN (__[POSTCOMPILE_gids])',
            ['gids'],
            {},
            {'gids': '?'},
        ),
        'uids_by_email': (
            "SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.appid = 'settings' AND ncauthprefix_preferences.configkey = 'email' AND lower(ncauthprefix_preferences.configvalue) = ?",
            ['email'],
            {},
            {},
        ),
        'email_of': (
            'SELECT ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ? AND ncauthprefix_preferences.appid = ? AND ncauthprefix_preferences.configkey = ?',
            ['uid', 'appid_1', 'configkey_1'],
            {'appid_1': 'settings', 'configkey_1': 'email'},
            {},
        ),
        'tokens': (
            'SELECT ncauthprefix_authtoken.id, ncauthprefix_authtoken.uid, ncauthprefix_authtoken.login_name, ncauthprefix_authtoken.type, ncauthprefix_authtoken.expires, ncauthprefix_authtoken.password_invalid, ncauthprefix_authtoken.password, ncauthprefix_authtoken.private_key \nFROM ncauthprefix_authtoken \nWHERE ncauthprefix_authtoken.token IN (__[POSTCOMPILE_tokens]) AND ncauthprefix_authtoken.version = ?\n LIMIT ? OFFSET ?',
            ['tokens', 'version_1', 'param_1', 'param_2'],
            {'version_1': 2, 'param_1': 5, 'param_2': 0},
            {'tokens': '?'},
        ),
        'groups_of': (
            'SELECT ncauthprefix_group_user.uid, ncauthprefix_group_user.gid \nFROM ncauthprefix_group_user \nWHERE ncauthprefix_group_user.uid = ?',
            ['uid'],
            {},
            {},
        ),
        'known_elsewhere': (
            'SELECT DISTINCT ncauthprefix_preferences.userid \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ?\n LIMIT ? OFFSET ?',
            ['uid', 'param_1', 'param_2'],
            {'param_1': 50, 'param_2': 0},
            {},
        ),
        'quota_of': (
            'SELECT ncauthprefix_preferences.userid, ncauthprefix_preferences.configvalue \nFROM ncauthprefix_preferences \nWHERE ncauthprefix_preferences.userid = ? AND ncauthprefix_preferences.appid = ? AND ncauthprefix_preferences.configkey = ?',
            ['uid', 'appid_1', 'configkey_1'],
            {'appid_1': 'files', 'configkey_1': 'quota'},
            {},
        ),
        'quota_appconfig': (
            'SELECT ncauthprefix_appconfig.configkey, ncauthprefix_appconfig.configvalue \nFROM ncauthprefix_appconfig \nWHERE ncauthprefix_appconfig.appid = ? AND ncauthprefix_appconfig.configkey IN (__[POSTCOMPILE_configkey_1])',
            ['appid_1', 'configkey_1'],
            {'appid_1': 'files', 'configkey_1': ['default_quota', 'allow_unlimited_quota', 'quota_preset']},
            {'configkey_1': '?'},
        ),
    },
}
