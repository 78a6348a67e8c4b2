"""A generated Nextcloud of any size, for the scale benchmark (bench/scale.py) and its test.

Every user gets what a Nextcloud 32 instance that has been in use for a while holds for
them: the ``oc_users`` row (``OC\\User\\Database::createUser``), about ten
``oc_preferences`` rows (settings/email, core/lang, core/locale, core/timezone,
login/lastLogin, avatar/generated, firstrunwizard/show, lookup_server_connector/dataSend,
dashboard/firstRun; files/quota, remember-me ``login_token`` rows, core/enabled 'false'
and notifications settings for some), app tokens (``oc_authtoken``: a session token for
most, app passwords for some), group memberships (``oc_group_user``) and second factors
for a few. Half the e-mail rows carry Nextcloud 32's indexed flag (rows written since the
settings lexicon flagged the key), half do not (rows from before). The shapes come from
``ncschema`` (Nextcloud's migrations); only the filling is bulk, by executemany through
the same table definitions, so that 100,000 users load in well under a minute.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import ncschema, population

DOMAIN = "example.org"
#: groups every user is spread over (a department and a location each), plus the few admins
GROUPS = [f"dept-{i:02d}" for i in range(20)] + [f"site-{i}" for i in range(5)]
#: app token plain text of every generated user's first app password: ``token_of(i)``
_TOKEN_PREFIX = "ScaleAppPassword-"
_BATCH = 5000
#: README's optional PostgreSQL index for match = "email" (``{table}``: the preferences table).
#: A hash index: it holds 4-byte hash codes only, so no preference value is too long for it.
EMAIL_INDEX_POSTGRES = (
    "CREATE INDEX ncauth_email_lower ON {table} USING hash (lower(configvalue)) "
    "WHERE appid = 'settings' AND configkey = 'email'"
)


@dataclass(frozen=True)
class Generated:
    """What was loaded: how many users, the uid of user *i* (``uid(i)``), and the figures."""

    users: int
    address_uids: bool
    rows: dict[str, int]
    seconds: float

    def uid(self, i: int) -> str:
        return uid_of(i, self.address_uids)


def uid_of(i: int, address: bool = False) -> str:
    """User *i*'s uid: ``User000042`` (mixed case, as people type them), or with
    ``address`` the whole address (for match = "address")."""
    base = f"User{i:06d}"
    return f"{base}@{DOMAIN}" if address else base


def email_of(i: int) -> str:
    """User *i*'s Nextcloud e-mail address (not its uid: match = "email" must look it up)."""
    return f"first.last{i:06d}@{DOMAIN}"


def token_of(i: int) -> str:
    """The plain app password of user *i*'s first app token (users with ``i % 3 == 0``)."""
    return f"{_TOKEN_PREFIX}{i:06d}-abcdefgh"


def login_of(i: int, match: str) -> str:
    """What user *i* types as login name under ``[accounts] match`` = *match* (with
    "address" in a database generated with ``address_uids``)."""
    if match == "email":
        return email_of(i)
    return uid_of(i).lower() + "@" + DOMAIN


def config_text(url: str, match: str) -> str:
    """An ncauth config for a generated database, in *match* mode."""
    return (
        population.config_text(url, "oc_")
        + f"[accounts]\ndomains = [{json.dumps(DOMAIN)}]\nmatch = {json.dumps(match)}\n"
        + ("trust_user_emails = true\n" if match == "email" else "")
        + '[userdb]\nuid = "vmail"\nhome = "/var/vmail/{domain}/{local}"\n'
    )


def populate(
    engine: Engine,
    users: int,
    password_hash: str,
    *,
    secret: str,
    prefix: str = "oc_",
    address_uids: bool = False,
    seed: int = 1,
) -> Generated:
    """Create Nextcloud's tables in *engine*'s database and fill them with *users* users, all
    with *password_hash* (the database part is what is measured; one hash serves all)."""
    started = time.perf_counter()
    md = ncschema.create_schema(engine, prefix)
    t = {name[len(prefix) :]: table for name, table in md.tables.items()}
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for name, rows in _rows(users, password_hash, secret, address_uids, random.Random(seed)):
            for chunk in _chunks(rows):
                _bulk_insert(conn, t[name], chunk)
                counts[name] = counts.get(name, 0) + len(chunk)
    with engine.begin() as conn:
        _analyze(conn, [t[name].name for name in counts])
    return Generated(users, address_uids, counts, time.perf_counter() - started)


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _bulk_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """*rows* into *table* at the driver's bulk speed: COPY on PostgreSQL, the driver's
    multi-row executemany elsewhere (what SQLAlchemy's per-row compiling would take
    minutes for at 100,000 users)."""
    columns = list(rows[0])
    cursor = conn.connection.cursor()
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    if conn.dialect.name == "postgresql":
        with cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    else:  # the driver's own statement for these columns, as SQLAlchemy writes it
        statement = str(table.insert().compile(dialect=conn.dialect, column_keys=columns))
        cursor.executemany(statement, rows)
    cursor.close()


def _rows(
    users: int, password_hash: str, secret: str, address_uids: bool, rnd: random.Random
) -> Iterator[tuple[str, Iterator[dict[str, Any]]]]:
    uids = [uid_of(i, address_uids) for i in range(users)]
    yield (
        "users",
        (
            {
                "uid": uid,
                "displayname": f"First Last {i}" if i % 2 else None,
                "password": password_hash,
                "uid_lower": ncschema.php_mb_strtolower(uid),
            }
            for i, uid in enumerate(uids)
        ),
    )
    yield "preferences", (row for i, uid in enumerate(uids) for row in _preferences(i, uid, rnd))
    yield "authtoken", (row for i, uid in enumerate(uids) for row in _tokens(i, uid, secret, rnd))
    yield "group_user", (row for i, uid in enumerate(uids) for row in _groups(i, uid))
    yield (
        "twofactor_providers",
        ({"provider_id": "totp", "uid": uid, "enabled": 1} for i, uid in enumerate(uids) if i % 20 == 7),
    )


def _pref(uid: str, app: str, key: str, value: str, **extra: Any) -> dict[str, Any]:
    row = {"userid": uid, "appid": app, "configkey": key, "configvalue": value}
    row.update({"lazy": 0, "type": ncschema.PREF_TYPE_MIXED, "flags": 0, "indexed": ""}, **extra)
    return row


def _preferences(i: int, uid: str, rnd: random.Random) -> Iterator[dict[str, Any]]:
    email = email_of(i)
    indexed = i % 2 == 0  # written by Nextcloud 32 (lexicon: indexed) or before it
    yield _pref(
        uid,
        "settings",
        "email",
        email,
        type=ncschema.PREF_TYPE_STRING,
        flags=ncschema.PREF_FLAG_INDEXED if indexed else 0,
        indexed=email if indexed else "",
    )
    now = 1_760_000_000 - rnd.randrange(90 * 86400)
    yield _pref(uid, "core", "lang", rnd.choice(("en", "de", "fr", "es", "nl")))
    yield _pref(uid, "core", "locale", rnd.choice(("en_US", "de_DE", "fr_FR")))
    yield _pref(uid, "core", "timezone", rnd.choice(("Europe/Berlin", "UTC", "America/New_York")))
    yield _pref(uid, "login", "lastLogin", str(now))
    yield _pref(uid, "avatar", "generated", "true")
    yield _pref(uid, "firstrunwizard", "show", "0")
    yield _pref(uid, "lookup_server_connector", "dataSend", "1")
    yield _pref(uid, "dashboard", "firstRun", "0")
    if i % 5 == 0:
        yield _pref(uid, "files", "quota", rnd.choice(("5 GB", "10 GB", "none")))
    if i % 100 == 3:
        yield _pref(uid, "core", "enabled", "false")
    if i % 4 == 1:
        yield _pref(uid, "notifications", "sound_notification", "no")
    for _ in range(rnd.randrange(3) if i % 3 == 1 else 0):  # remember-me cookies
        yield _pref(uid, "login_token", secrets.token_hex(16), str(now))


def _tokens(i: int, uid: str, secret: str, rnd: random.Random) -> Iterator[dict[str, Any]]:
    """A browser session for most users, app passwords (sync clients, phones) for a third:
    stored as PublicKeyTokenProvider stores a passwordless token (no key pair needed to
    find it: the lookup is by the ``token`` hash)."""
    base = {
        "uid": uid,
        "login_name": uid,
        "password": None,
        "name": "Firefox",
        "remember": 0,
        "last_activity": 1_760_000_000,
        "last_check": 1_760_000_000,
        "scope": None,
        "expires": None,
        "private_key": None,
        "public_key": None,
        "version": 2,
        "password_invalid": False,
        "password_hash": None,
    }
    if i % 4 != 0:
        yield {**base, "token": ncschema.hash_app_token(secrets.token_hex(36), secret), "type": 0}
    if i % 3 == 0:
        yield {**base, "token": ncschema.hash_app_token(token_of(i), secret), "type": 1, "name": "DAVx5"}
        for _ in range(rnd.randrange(3)):
            yield {**base, "token": ncschema.hash_app_token(secrets.token_hex(36), secret), "type": 1}


def _groups(i: int, uid: str) -> Iterator[dict[str, str]]:
    yield {"gid": GROUPS[i % 20], "uid": uid}
    yield {"gid": GROUPS[20 + i % 5], "uid": uid}
    if i % 1000 == 0:
        yield {"gid": "admin", "uid": uid}


def _analyze(conn: sa.Connection, tables: list[str]) -> None:
    """Fresh statistics, as a database that has been in use has them (the planner's choices
    depend on them)."""
    quote = conn.dialect.identifier_preparer.quote
    for table in tables:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ANALYZE {quote(table)}"))
        elif conn.dialect.name in ("mysql", "mariadb"):
            conn.execute(sa.text(f"ANALYZE TABLE {quote(table)}")).all()


@contextmanager
def recording() -> Iterator[list[tuple[str, Any]]]:
    """Every (statement, parameters) any engine sends to its driver meanwhile: what
    ncauth's store really asks, for EXPLAIN."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def explain(conn: sa.Connection, statement: str, params: Any, *, generic: bool = False) -> list[str]:
    """The plan of *statement*, as the driver sent it with *params* (recorded from ncauth's
    store); one line per plan node or row. *generic* (PostgreSQL): the plan made without
    the values, as a statement the driver prepared may get."""
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name != "postgresql":
            cursor.execute("EXPLAIN " + statement, params)
            names = [d[0] for d in cursor.description]
            return [
                " ".join(f"{k}={v}" for k, v in zip(names, row, strict=True) if v is not None)
                for row in cursor.fetchall()
            ]
        if not generic:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, params)
            return [row[0] for row in cursor.fetchall()]
        order = re.findall(r"%\((\w+)\)s", statement)
        numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${order.index(m.group(1)) + 1}", statement)
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE ncauth_explained AS {numbered}")
        try:
            from psycopg import sql  # a utility statement takes no bound parameters

            values = sql.SQL(", ").join(sql.Literal(params[k]) for k in order)
            cursor.execute(sql.SQL("EXPLAIN (COSTS OFF) EXECUTE ncauth_explained({})").format(values))
            return [row[0] for row in cursor.fetchall()]
        finally:
            cursor.execute("DEALLOCATE ncauth_explained")
            cursor.execute("RESET plan_cache_mode")
    finally:
        cursor.close()
