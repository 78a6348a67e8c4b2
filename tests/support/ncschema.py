"""Nextcloud's real table shapes, for tests.

The tables are reproduced from Nextcloud's own Doctrine migrations in
``nextcloud/server`` (read through the stored index of public repositories;
commit noted where the index gave one):

* core/Migrations/Version13000Date20170718121200.php @ fa1a5aec28d8 (creates
  appconfig, group_user, preferences, users, authtoken, accounts)
* Version13000Date20170919121250.php (authtoken ints unsigned),
  Version13000Date20170926101637.php @ 13088b745a7b (authtoken.id -> bigint)
* Version14000Date20180404140050.php @ 0bfd6217bdbe (users.uid_lower, user_uid_lower)
* Version14000Date20180516101403.php (authtoken.expires int unsigned NULL)
* Version14000Date20180518120534.php (authtoken private_key, public_key,
  version smallint default 1, authtoken_uid_index)
* Version14000Date20180522074438.php (twofactor_providers + twofactor_providers_uid)
* Version15000Date20180926101451.php @ 17fa2c7605b9 (authtoken.password_invalid)
* Version21000Date20201120141228.php @ 0207be4c7950 (login_name length 255;
  type/remember/last_activity/last_check made nullable)
* Version21000Date20201202095923.php @ 0005a2442a65 (accounts_data)
* Version21000Date20210119195004.php @ 17fa2c7605b9 (drops authtoken_version_index)
* Version22000Date20210216080825.php (drops appconfig_appid_key)
* Version25000Date20220905140840.php @ 24363f0b2975 (authtoken.password_hash)
* Version29000Date20240124132201.php / ...132202.php @ 08ec513f2956 (appconfig
  type int default 2, lazy smallint, ac_lazy_i; drops appconfig_config_key_index)
* Version31000Date20240814184402.php @ fa1a5aec28d8 (preferences lazy, type,
  flags, indexed; drops preferences_app_key; prefs_uid_lazy_i,
  prefs_app_key_ind_fl_i)

``version=31`` (default) is the shape of Nextcloud 31/32; ``version=30`` gives
the Nextcloud 29/30 preferences table (no lazy/type/flags/indexed columns,
index preferences_app_key).  Everything else is identical for 29..32.

Mapping notes: Doctrine ``text`` is LONGTEXT on MySQL/MariaDB (as Doctrine
makes it); ``unsigned`` is kept on MySQL/MariaDB and ignored elsewhere; tables
on MySQL/MariaDB use utf8mb4 / utf8mb4_bin like a Nextcloud install with
``mysql.utf8mb4`` (so ``=`` is case-sensitive there, as in production).
Doctrine drops defaults of TEXT columns on MySQL, so TEXT columns get no
server default here either (helpers always supply a value).  Index names are
Nextcloud's, unprefixed: on PostgreSQL and SQLite index names are global to a
schema/database, so two prefixes in one PostgreSQL schema collide exactly as
two Nextcloud instances would; pass ``index_name_prefix`` to avoid that.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "APPCONFIG_TYPE_MIXED",
    "PREF_FLAG_INDEXED",
    "PREF_FLAG_SENSITIVE",
    "PREF_TYPE_MIXED",
    "PREF_TYPE_STRING",
    "TOKEN_ONETIME",
    "TOKEN_PERMANENT",
    "TOKEN_TEMPORARY",
    "TOKEN_WIPE",
    "add_app_token",
    "add_group_member",
    "add_two_factor",
    "add_user",
    "create_schema",
    "disable_user",
    "enable_user",
    "hash_app_token",
    "nextcloud_metadata",
    "php_mb_strtolower",
    "php_strtolower",
    "set_appconfig",
    "set_email",
    "set_preference",
]

# OCP\Authentication\Token\IToken
TOKEN_TEMPORARY = 0
TOKEN_PERMANENT = 1
TOKEN_WIPE = 2
TOKEN_ONETIME = 3  # only in Nextcloud newer than 31 (QR-code one-time login)

# OCP\Config\ValueType (preferences.type) and IUserConfig flags
PREF_TYPE_MIXED = 0
PREF_TYPE_STRING = 1
PREF_FLAG_SENSITIVE = 1
PREF_FLAG_INDEXED = 2

# OCP\IAppConfig::VALUE_MIXED (appconfig.type default)
APPCONFIG_TYPE_MIXED = 2

_MY = ("mysql", "mariadb")
_MYSQL_TABLE_KW = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def _on_mysql(base: sa.types.TypeEngine, variant: sa.types.TypeEngine) -> sa.types.TypeEngine:
    """``base`` with ``variant`` on MySQL and MariaDB (one name per call: SQLAlchemy 1.4 takes one)."""
    for name in _MY:
        base = base.with_variant(variant, name)
    return base


def _text() -> sa.types.TypeEngine:
    return _on_mysql(sa.Text(), mysql.LONGTEXT())


def _uint() -> sa.types.TypeEngine:
    return _on_mysql(sa.Integer(), mysql.INTEGER(unsigned=True))


def _usmallint() -> sa.types.TypeEngine:
    return _on_mysql(sa.SmallInteger(), mysql.SMALLINT(unsigned=True))


def _bigint_id(unsigned: bool) -> sa.types.TypeEngine:
    # SQLite only auto-increments an INTEGER PRIMARY KEY (rowid alias).
    return _on_mysql(sa.BigInteger(), mysql.BIGINT(unsigned=unsigned)).with_variant(sa.Integer(), "sqlite")


def _d(value: int | str) -> Any:
    """Server default in Doctrine's spirit: numbers bare, strings quoted."""
    if isinstance(value, int):
        return sa.text(str(value))
    return value  # SQLAlchemy renders a str server_default as a quoted literal


def nextcloud_metadata(prefix: str = "oc_", *, version: int = 31, index_name_prefix: str = "") -> sa.MetaData:
    """Return a fresh MetaData with users, preferences, authtoken,
    twofactor_providers, appconfig, group_user, accounts and accounts_data."""
    md = sa.MetaData()
    ix = index_name_prefix

    def table(name: str, *items: Any) -> sa.Table:
        return sa.Table(prefix + name, md, *items, **_MYSQL_TABLE_KW)

    table(
        "users",
        sa.Column("uid", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("displayname", sa.String(64), nullable=True),
        sa.Column("password", sa.String(255), nullable=False, server_default=_d("")),
        sa.Column("uid_lower", sa.String(64), nullable=True, server_default=_d("")),
        sa.PrimaryKeyConstraint("uid"),
        sa.Index(ix + "user_uid_lower", "uid_lower"),
    )

    prefs: list[Any] = [
        sa.Column("userid", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("appid", sa.String(32), nullable=False, server_default=_d("")),
        sa.Column("configkey", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("configvalue", _text(), nullable=True),
        sa.PrimaryKeyConstraint("userid", "appid", "configkey"),
    ]
    if version >= 31:
        prefs += [
            sa.Column("lazy", _usmallint(), nullable=False, server_default=_d(0)),
            sa.Column("type", _usmallint(), nullable=False, server_default=_d(0)),
            sa.Column("flags", _uint(), nullable=False, server_default=_d(0)),
            sa.Column("indexed", sa.String(64), nullable=True, server_default=_d("")),
            sa.Index(ix + "prefs_uid_lazy_i", "userid", "lazy"),
            sa.Index(ix + "prefs_app_key_ind_fl_i", "appid", "configkey", "indexed", "flags"),
        ]
    else:
        prefs.append(sa.Index(ix + "preferences_app_key", "appid", "configkey"))
    table("preferences", *prefs)

    table(
        "authtoken",
        sa.Column("id", _bigint_id(unsigned=True), nullable=False, autoincrement=True),
        sa.Column("uid", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("login_name", sa.String(255), nullable=False, server_default=_d("")),
        sa.Column("password", _text(), nullable=True),
        sa.Column("name", _text(), nullable=False, default=""),
        sa.Column("token", sa.String(200), nullable=False, server_default=_d("")),
        sa.Column("type", _usmallint(), nullable=True, server_default=_d(0)),
        sa.Column("remember", _usmallint(), nullable=True, server_default=_d(0)),
        sa.Column("last_activity", _uint(), nullable=True, server_default=_d(0)),
        sa.Column("last_check", _uint(), nullable=True, server_default=_d(0)),
        sa.Column("scope", _text(), nullable=True),
        sa.Column("expires", _uint(), nullable=True),
        sa.Column("private_key", _text(), nullable=True),
        sa.Column("public_key", _text(), nullable=True),
        sa.Column("version", _usmallint(), nullable=False, server_default=_d(1)),
        sa.Column("password_invalid", sa.Boolean(), nullable=True, server_default=sa.false()),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index(ix + "authtoken_token_index", "token", unique=True),
        sa.Index(ix + "authtoken_last_activity_idx", "last_activity"),
        sa.Index(ix + "authtoken_uid_index", "uid"),
    )

    table(
        "twofactor_providers",
        sa.Column("provider_id", sa.String(32), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("enabled", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", "uid"),
        sa.Index(ix + "twofactor_providers_uid", "uid"),
    )

    table(
        "appconfig",
        sa.Column("appid", sa.String(32), nullable=False, server_default=_d("")),
        sa.Column("configkey", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("configvalue", _text(), nullable=True),
        sa.Column("type", _uint(), nullable=False, server_default=_d(APPCONFIG_TYPE_MIXED)),
        sa.Column("lazy", _usmallint(), nullable=False, server_default=_d(0)),
        sa.PrimaryKeyConstraint("appid", "configkey"),
        sa.Index(ix + "ac_lazy_i", "lazy"),
    )

    table(
        "group_user",
        sa.Column("gid", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("uid", sa.String(64), nullable=False, server_default=_d("")),
        sa.PrimaryKeyConstraint("gid", "uid"),
        sa.Index(ix + "gu_uid_index", "uid"),
    )

    table(
        "accounts",
        sa.Column("uid", sa.String(64), nullable=False, server_default=_d("")),
        sa.Column("data", _text(), nullable=False, default=""),
        sa.PrimaryKeyConstraint("uid"),
    )

    table(
        "accounts_data",
        sa.Column("id", _bigint_id(unsigned=False), nullable=False, autoincrement=True),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(255), nullable=True, server_default=_d("")),
        sa.PrimaryKeyConstraint("id"),
        sa.Index(ix + "accounts_data_uid", "uid"),
        sa.Index(ix + "accounts_data_name", "name"),
        sa.Index(ix + "accounts_data_value", "value"),
    )
    return md


def create_schema(
    engine: Engine, prefix: str = "oc_", *, version: int = 31, index_name_prefix: str = ""
) -> sa.MetaData:
    """Create the tables (skipping existing ones) and return their MetaData."""
    md = nextcloud_metadata(prefix, version=version, index_name_prefix=index_name_prefix)
    md.create_all(engine)
    return md


# ---------------------------------------------------------------- PHP parity


def php_mb_strtolower(s: str) -> str:
    """PHP ``mb_strtolower`` (full Unicode lower-casing since PHP 7.3).

    Python's ``str.lower`` is the same full mapping; the one known difference
    is the Greek final sigma, which PHP applies only from 8.3 on.  Nextcloud's
    ``validateUserId`` allows only ``[a-zA-Z0-9 _.@-']`` for new uids anyway.
    """
    return s.lower()


def php_strtolower(s: str) -> str:
    """PHP 8 ``strtolower``: ASCII A-Z only, byte-wise (non-ASCII untouched)."""
    return s.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def hash_app_token(token_plain: str, secret: str) -> str:
    """``PublicKeyTokenProvider::hashToken``: hex ``hash('sha512', $token . $secret)``."""
    return hashlib.sha512((token_plain + secret).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------- helpers


@functools.cache
def _tables(prefix: str) -> sa.MetaData:
    return nextcloud_metadata(prefix)


def _t(conn: Connection, prefix: str, name: str) -> sa.Table:
    table = _tables(prefix).tables[prefix + name]
    if name == "preferences" and "lazy" not in {
        c["name"] for c in sa.inspect(conn).get_columns(prefix + name)
    }:
        # a version-30 table: no lazy/type/flags/indexed columns
        return nextcloud_metadata(prefix, version=30).tables[prefix + name]
    return table


def _upsert(conn: Connection, table: sa.Table, keys: dict[str, Any], values: dict[str, Any]) -> None:
    cond = sa.and_(*(table.c[k] == v for k, v in keys.items()))
    exists = conn.execute(sa.select(sa.literal(1)).select_from(table).where(cond)).first()
    if exists:
        if values:
            conn.execute(table.update().where(cond).values(**values))
    else:
        conn.execute(table.insert().values(**keys, **values))


def add_user(
    conn: Connection,
    prefix: str,
    uid: str,
    password_hash: str,
    *,
    displayname: str | None = None,
) -> None:
    """Insert an ``oc_users`` row as ``OC\\User\\Database::createUser`` does
    (``uid_lower = mb_strtolower(uid)``; displayname stays NULL unless set)."""
    conn.execute(
        _t(conn, prefix, "users")
        .insert()
        .values(
            uid=uid,
            displayname=displayname,
            password=password_hash,
            uid_lower=php_mb_strtolower(uid),
        )
    )


def set_preference(
    conn: Connection,
    prefix: str,
    userid: str,
    appid: str,
    configkey: str,
    value: str,
    *,
    lazy: bool = False,
    value_type: int = PREF_TYPE_MIXED,
    flags: int = 0,
    indexed: str = "",
) -> None:
    """Upsert an ``oc_preferences`` row.  The defaults are what
    ``IConfig::setUserValue`` writes on Nextcloud 31+ (``setValueMixed``:
    type 0, flags 0, lazy 0, indexed '').  On a version-30 table the extra
    columns are not written."""
    t = _t(conn, prefix, "preferences")
    values: dict[str, Any] = {"configvalue": value}
    if "lazy" in t.c:
        values.update(lazy=1 if lazy else 0, type=value_type, flags=flags, indexed=indexed)
    _upsert(conn, t, {"userid": userid, "appid": appid, "configkey": configkey}, values)


def disable_user(conn: Connection, prefix: str, uid: str) -> None:
    """``IUser::setEnabled(false)``: preferences core/enabled = 'false'."""
    set_preference(conn, prefix, uid, "core", "enabled", "false")


def enable_user(conn: Connection, prefix: str, uid: str) -> None:
    """``IUser::setEnabled(true)``: preferences core/enabled = 'true'."""
    set_preference(conn, prefix, uid, "core", "enabled", "true")


def set_email(
    conn: Connection,
    prefix: str,
    uid: str,
    email: str,
    *,
    indexed: bool = False,
    mirror_account: bool = True,
) -> None:
    """Store the user's (system) e-mail as Nextcloud does: preferences
    settings/email, lower-cased with PHP ``strtolower`` (AllConfig::setUserValue
    up to 30, UserConfig::setTypedValue and the settings ConfigLexicon since 31),
    typed STRING (1) on 31+.

    ``indexed=True`` gives the Nextcloud 32+ row (settings lexicon flags the key
    FLAG_INDEXED: flags=2 and the value copied to ``indexed``, which
    ``searchUsersByValueString`` then searches).  ``mirror_account`` also writes
    ``accounts_data`` (uid, 'email', value) and the ``email`` property of the
    ``accounts`` JSON (scope v2-federated, verified '0'); the case used there by
    AccountManager was not checked, the lower-cased value is used.
    """
    value = php_strtolower(email)
    if indexed:
        set_preference(
            conn,
            prefix,
            uid,
            "settings",
            "email",
            value,
            value_type=PREF_TYPE_STRING,
            flags=PREF_FLAG_INDEXED,
            indexed=value if len(value) <= 64 else "",
        )
    else:
        set_preference(conn, prefix, uid, "settings", "email", value, value_type=PREF_TYPE_STRING)
    if not mirror_account:
        return
    ad = _t(conn, prefix, "accounts_data")
    conn.execute(ad.delete().where(sa.and_(ad.c.uid == uid, ad.c.name == "email")))
    conn.execute(ad.insert().values(uid=uid, name="email", value=value))
    acc = _t(conn, prefix, "accounts")
    row = conn.execute(sa.select(acc.c.data).where(acc.c.uid == uid)).first()
    data: dict[str, Any] = {}
    if row and row[0]:
        try:
            data = json.loads(row[0])
        except ValueError:
            data = {}
    data["email"] = {"value": value, "scope": "v2-federated", "verified": "0"}
    _upsert(conn, acc, {"uid": uid}, {"data": json.dumps(data)})


def add_app_token(
    conn: Connection,
    prefix: str,
    uid: str,
    login_name: str,
    token_plain: str,
    secret: str,
    *,
    type: int = TOKEN_PERMANENT,
    expires: int | None = None,
    password_invalid: bool = False,
    version: int = 2,
    name: str = "test",
    **columns: Any,
) -> int:
    """Insert an ``oc_authtoken`` row whose ``token`` is
    ``hash_app_token(token_plain, secret)`` (pass ``secret=""`` for the
    no-secret fallback hash) and return its id.  ``expires`` is a Unix time
    in seconds (NULL/0 = never).  ``password``, ``private_key``,
    ``public_key``, ``scope`` and ``password_hash`` are left NULL (a
    passwordless token); override any column with keyword arguments."""
    now = int(time.time())
    values: dict[str, Any] = {
        "uid": uid,
        "login_name": login_name,
        "password": None,
        "name": name,
        "token": hash_app_token(token_plain, secret),
        "type": type,
        "remember": 0,
        "last_activity": now,
        "last_check": now,
        "scope": None,
        "expires": expires,
        "private_key": None,
        "public_key": None,
        "version": version,
        "password_invalid": password_invalid,
        "password_hash": None,
    }
    values.update(columns)
    result = conn.execute(_t(conn, prefix, "authtoken").insert().values(**values))
    return int(result.inserted_primary_key[0])


def add_two_factor(conn: Connection, prefix: str, uid: str, provider_id: str, enabled: bool = True) -> None:
    """Upsert ``oc_twofactor_providers`` (ProviderUserAssignmentDao::persist)."""
    _upsert(
        conn,
        _t(conn, prefix, "twofactor_providers"),
        {"provider_id": provider_id, "uid": uid},
        {"enabled": 1 if enabled else 0},
    )


def set_appconfig(
    conn: Connection,
    prefix: str,
    appid: str,
    configkey: str,
    value: str,
    *,
    value_type: int = APPCONFIG_TYPE_MIXED,
    lazy: bool = False,
) -> None:
    """Upsert ``oc_appconfig`` (type 2 = VALUE_MIXED, as ``setAppValue`` writes)."""
    _upsert(
        conn,
        _t(conn, prefix, "appconfig"),
        {"appid": appid, "configkey": configkey},
        {"configvalue": value, "type": value_type, "lazy": 1 if lazy else 0},
    )


def add_group_member(conn: Connection, prefix: str, gid: str, uid: str) -> None:
    """Insert ``oc_group_user`` (gid, uid); an existing membership is kept."""
    _upsert(conn, _t(conn, prefix, "group_user"), {"gid": gid, "uid": uid}, {})
