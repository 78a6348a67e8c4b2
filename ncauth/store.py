"""Read-only access to the Nextcloud tables ncauth needs, through SQLAlchemy Core.

Only the columns read are declared, under the configured table prefix. Each
decision costs one indexed query for the user (with the ``enabled`` flag and the
second-factor count folded in as sub-queries) plus one for app passwords when the
password could be one. Every database problem becomes TemporaryFailure with the
URL's password redacted and the statement parameters hidden, so neither a
password nor an app-token hash can reach a log line through an exception.

Every statement is written here once (:func:`statements`); ``queries.Reader`` runs them
by name and turns rows into records. A one-shot checkpassword runs the same statements
without importing SQLAlchemy: :func:`sqltext_source` compiles them into
``ncauth/sqltext.py`` for ``oneshot.OneShotStore``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ncauth.config import NextcloudSection
from ncauth.errors import ConfigError, TemporaryFailure
from ncauth.queries import (
    CANDIDATES,
    QUOTA_APPCONFIG,
    Call,
    Reader,
    Row,
    connect_args,
    describe_error,
    sqlite_read_only,
    uncomparable,
)

T = TypeVar("T")


class Tables:
    """The Nextcloud tables, as far as ncauth reads them, under a prefix."""

    def __init__(self, prefix: str) -> None:
        md = sa.MetaData()
        s = sa.String
        self.users = sa.Table(
            f"{prefix}users",
            md,
            sa.Column("uid", s(64), primary_key=True),
            sa.Column("uid_lower", s(64)),
            sa.Column("password", s(255)),
        )
        self.preferences = sa.Table(
            f"{prefix}preferences",
            md,
            sa.Column("userid", s(64), primary_key=True),
            sa.Column("appid", s(32), primary_key=True),
            sa.Column("configkey", s(64), primary_key=True),
            sa.Column("configvalue", sa.Text),
        )
        self.authtoken = sa.Table(
            f"{prefix}authtoken",
            md,
            sa.Column("id", sa.BigInteger, primary_key=True),
            sa.Column("uid", s(64)),
            sa.Column("login_name", s(255)),
            sa.Column("token", s(200)),
            sa.Column("type", sa.SmallInteger),
            sa.Column("expires", sa.Integer),
            sa.Column("password_invalid", sa.Boolean),
            sa.Column("version", sa.SmallInteger),
            sa.Column("password", sa.Text),
            sa.Column("private_key", sa.Text),
        )
        self.twofactor_providers = sa.Table(
            f"{prefix}twofactor_providers",
            md,
            sa.Column("provider_id", s(32), primary_key=True),
            sa.Column("uid", s(64), primary_key=True),
            sa.Column("enabled", sa.SmallInteger),
        )
        self.group_user = sa.Table(
            f"{prefix}group_user",
            md,
            sa.Column("gid", s(64), primary_key=True),
            sa.Column("uid", s(64), primary_key=True),
        )
        self.appconfig = sa.Table(
            f"{prefix}appconfig",
            md,
            sa.Column("appid", s(32), primary_key=True),
            sa.Column("configkey", s(64), primary_key=True),
            sa.Column("configvalue", sa.Text),
        )
        #: every table every configuration reads, in the order `ncauth sql` grants them
        self.all = (self.users, self.preferences, self.twofactor_providers, self.group_user, self.authtoken)
        #: what ``quota_settings`` reads, for ``{quota_bytes}`` (preferences are in ``all``)
        self.quota = (self.preferences, self.appconfig)

    def read_by(self, *, quota: bool) -> tuple[sa.Table, ...]:
        """The tables ncauth's queries read: ``all``, plus ``quota`` when a ``[userdb]``
        value uses ``{quota_bytes}``; each once, in grant order."""
        tables = self.all + (self.quota if quota else ())
        return tuple(dict.fromkeys(tables))


def _connect_args(url: sa.URL, section: NextcloudSection) -> dict[str, object]:
    return connect_args(url.get_backend_name(), section)


def parse_url(text: str) -> sa.URL:
    """*text* parsed by the parser that connects (SQLAlchemy's ``make_url``); a
    malformed URL is a configuration error that shows no password."""
    try:
        url = sa.engine.make_url(text)
        if "@" in (url.host or ""):  # 'user:p@ss@host': the password ends at its '@'
            raise ValueError("an '@' in the host")
        return url
    except Exception:  # ArgumentError, ValueError for a bad IPv6 host, …
        raise ConfigError(
            f"[nextcloud] database_url {redact_url(text)!r} is not a valid database URL "
            "(e.g. mysql+pymysql://user:pw@host/nextcloud); percent-encode special characters "
            "in the password"
        ) from None


def redact_url(text: str) -> str:
    """The URL with every place a password can sit (user info, ``?password=``,
    ``?passwd=``) shown as ``***``, for traces, logs and errors; only the scheme of a
    URL that does not parse."""
    try:
        url = sa.engine.make_url(text)
    except Exception:
        return text.split("://", 1)[0][:40] + "://***"
    query = {k: ("***" if "pass" in k.lower() else v) for k, v in url.query.items()}
    # An unescaped '@' in the password leaves the rest of it in the host: show what follows the last '@'.
    host = url.host.rpartition("@")[2] if url.host else url.host
    return url.set(query=query, host=host).render_as_string(hide_password=True)


def make_engine(url_text: str, section: NextcloudSection) -> Engine:
    """An engine with short timeouts and a pool that notices a restarted server. A
    driver that is not installed, or a SQLite file that does not exist, is a ConfigError:
    retrying cannot help, and checkpassword would otherwise temp-fail every login."""
    url = parse_url(url_text)
    kwargs: dict[str, object] = {"hide_parameters": True, "connect_args": _connect_args(url, section)}
    if url.get_backend_name() == "sqlite":
        url = _sqlite_read_only(url, url_text)
    else:
        kwargs.update(
            pool_pre_ping=True,
            pool_recycle=1800,
            pool_timeout=section.connect_timeout,
            pool_size=8,
            max_overflow=8,
        )
    try:
        return sa.create_engine(url, **kwargs)
    except ImportError as exc:  # create_engine imports the URL's driver
        raise ConfigError(_missing_driver(url, url_text, exc)) from None
    except sa.exc.NoSuchModuleError:
        raise ConfigError(
            f"[nextcloud] database_url {redact_url(url_text)!r}: no such database kind "
            f"(use mysql+pymysql://, {_postgresql()[0]}:// or sqlite:///)"
        ) from None
    except Exception as exc:  # a bad option
        raise TemporaryFailure(f"cannot set up {redact_url(url_text)}: {type(exc).__name__}: {exc}") from None


def _postgresql() -> tuple[str, str]:
    """(URL form, how to install its driver) for PostgreSQL under this SQLAlchemy: psycopg 3
    from 2.0 on; SQLAlchemy 1.4 (Debian 12) has no psycopg 3 dialect, only psycopg2."""
    if int(sa.__version__.split(".")[0]) >= 2:
        return "postgresql+psycopg", "pip install 'ncauth[postgresql]' (Debian: apt install python3-psycopg)"
    return "postgresql+psycopg2", "apt install python3-psycopg2 (SQLAlchemy 1.4 has no psycopg 3 dialect)"


def _missing_driver(url: sa.URL, url_text: str, exc: ImportError) -> str:
    """What to write instead, when *url*'s driver module is not installed."""
    backend, driver = url.get_backend_name(), url.get_driver_name()
    where = f"[nextcloud] database_url {redact_url(url_text)!r}"
    missing = f"its driver module {exc.name or driver!r} is not installed"
    if backend in ("mysql", "mariadb") and driver != "pymysql":
        return f"{where}: {missing}; write it as mysql+pymysql://… (ncauth comes with PyMySQL)"
    form, install = _postgresql()
    if backend == "postgresql" and f"{backend}+{driver}" != form:
        return f"{where}: {missing}; write it as {form}://… and install its driver: {install}"
    if backend == "postgresql":
        return f"{where}: {missing}: {install}"
    return f"{where}: {missing}"


def _sqlite_read_only(url: sa.URL, url_text: str) -> sa.URL:
    """*url* opened read-only (``queries.sqlite_read_only``); an in-memory or URI-form
    database is left as given, with ``mode=ro`` added to the URI form."""
    database = url.database or ""
    if url.query.get("uri") in ("true", "1"):
        if "?" in database or "#" in database:  # SQLAlchemy 2.1 unquotes %3F: a query of its own
            raise ConfigError(
                f"[nextcloud] database_url {redact_url(url_text)!r}: the SQLite URI's path holds "
                "'?' or '#': give its options in the URL's own query (…?uri=true&…)"
            )
        return url.update_query_dict({"mode": "ro"})
    if database in ("", ":memory:"):
        return url
    uri = sqlite_read_only(database, redact_url(url_text))
    return url.set(database=uri).update_query_dict({"mode": "ro", "uri": "true"})


def statements(t: Tables) -> dict[str, sa.Select[tuple[object, ...]]]:
    """Every query ncauth runs, by name (``queries.Reader`` runs them): the caller's values
    are bound parameters named after what they are, the constants are ncauth's own."""
    u, p, tf, a, gu, ac = (
        t.users,
        t.preferences,
        t.twofactor_providers,
        t.authtoken,
        t.group_user,
        t.appconfig,
    )
    enabled = (
        sa.select(p.c.configvalue)
        .where(p.c.userid == u.c.uid, p.c.appid == "core", p.c.configkey == "enabled")
        .scalar_subquery()
    )
    second = (
        sa.select(sa.func.count())
        .select_from(tf)
        .where(tf.c.uid == u.c.uid, tf.c.enabled == 1, tf.c.provider_id != "backup_codes")
        .scalar_subquery()
    )
    # A user row with the ``enabled`` flag and the count of second factors folded in as
    # sub-queries (one round trip per decision). No LIMIT: every candidate row gets the
    # exact comparison (one row per user at most can match, so this is bounded by the
    # number of users, never by what a user sends).
    user = sa.select(u.c.uid, u.c.uid_lower, u.c.password, enabled.label("enabled"), second.label("second"))
    email = (p.c.appid == "settings", p.c.configkey == "email")
    return {
        "users_by_uid_lower": user.where(u.c.uid_lower == sa.bindparam("uid_lower")),
        "user_by_uid": user.where(u.c.uid == sa.bindparam("uid")),
        "all_users": user,
        "emails": sa.select(p.c.userid, p.c.configvalue).where(*email),
        "members": sa.select(gu.c.uid, gu.c.gid).where(gu.c.gid.in_(sa.bindparam("gids", expanding=True))),
        # appid and configkey written into the SQL, not bound: only then can PostgreSQL use
        # the optional partial index on lower(configvalue) (docs/performance.md, "Scale") in
        # a generic plan too, which a statement the driver has prepared may get; without it,
        # this reads every e-mail row, as Nextcloud's own getByEmail does
        "uids_by_email": sa.select(p.c.userid, p.c.configvalue).where(
            p.c.appid == sa.literal_column("'settings'"),
            p.c.configkey == sa.literal_column("'email'"),
            sa.func.lower(p.c.configvalue) == sa.bindparam("email"),
        ),
        "email_of": sa.select(p.c.configvalue).where(p.c.userid == sa.bindparam("uid"), *email),
        "tokens": sa.select(
            a.c.id,
            a.c.uid,
            a.c.login_name,
            a.c.type,
            a.c.expires,
            a.c.password_invalid,
            a.c.password,
            a.c.private_key,
        )
        .where(a.c.token.in_(sa.bindparam("tokens", expanding=True)), a.c.version == 2)
        .limit(5),
        "groups_of": sa.select(gu.c.uid, gu.c.gid).where(gu.c.uid == sa.bindparam("uid")),
        "known_elsewhere": sa.select(p.c.userid)
        .where(p.c.userid == sa.bindparam("uid"))
        .distinct()
        .limit(CANDIDATES),
        "quota_of": sa.select(p.c.userid, p.c.configvalue).where(
            p.c.userid == sa.bindparam("uid"), p.c.appid == "files", p.c.configkey == "quota"
        ),
        "quota_appconfig": sa.select(ac.c.configkey, ac.c.configvalue).where(
            ac.c.appid == "files", ac.c.configkey.in_(QUOTA_APPCONFIG)
        ),
    }


class Store(Reader):
    """The Nextcloud database through SQLAlchemy: pooled connections, failover."""

    def __init__(self, section: NextcloudSection) -> None:
        for url in section.database_urls:  # a malformed URL is a config error now, not an outage later
            parse_url(url)
        self.section = section
        self.tables = Tables(section.table_prefix)
        self.users_table = self.tables.users.name
        self._statements = statements(self.tables)
        self._engines: dict[str, Engine] = {}
        self._dead_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.reconnects = 0

    def prepare(self) -> None:
        """Set up every URL's engine now (connecting to nothing): a missing driver or
        SQLite file is a ConfigError at start, not a temporary failure at each login."""
        for url in self.section.database_urls:
            self._engine(url)

    # -- plumbing --------------------------------------------------------------------

    def _engine(self, url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                engine = self._engines[url] = make_engine(url, self.section)
            return engine

    def _fetch(self, calls: Sequence[Call], nothing: list[list[Row]]) -> list[list[Row]]:
        def work(conn: sa.Connection) -> list[list[Row]]:
            return [list(conn.execute(self._statements[name], params).all()) for name, params in calls]

        return self._run(work, nothing)

    def _run(self, work: Callable[[sa.Connection], T], nothing: T) -> T:
        """Run *work* on the first live database; connection failures move on to the
        next URL, and any database error ends as TemporaryFailure, except that a value
        the database cannot even compare (a 4-byte character against a legacy utf8mb3
        table) matches nothing: *nothing* is returned, and the database stays alive."""
        urls = self.section.database_urls
        now = time.monotonic()
        order = [u for u in urls if self._dead_until.get(u, 0) <= now] + [
            u for u in urls if self._dead_until.get(u, 0) > now
        ]
        last: Exception | None = None
        for url in order:
            engine = self._engine(url)
            try:
                with engine.connect() as conn:
                    result = work(conn)
                self._dead_until.pop(url, None)
                return result
            except sa.exc.DBAPIError as exc:
                if uncomparable(exc.orig):
                    return nothing
                last = exc
                if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
                    self._dead_until[url] = time.monotonic() + self.section.failover_retry
                    self.reconnects += 1
                    continue
                break
            except sa.exc.SQLAlchemyError as exc:
                last = exc
                break
        raise TemporaryFailure(f"database: {describe_error(last)}") from None

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()

    def describe_urls(self) -> str:
        return ", ".join(redact_url(u) for u in self.section.database_urls)


#: The driver of each dialect whose statements ``ncauth/sqltext.py`` holds, as its URLs
#: name it: what ``oneshot.OneShotStore`` can run without SQLAlchemy.
ONESHOT_DRIVERS = {"mysql": "mysql+pymysql", "postgresql": "postgresql+psycopg", "sqlite": "sqlite+pysqlite"}
#: The table prefix ``ncauth/sqltext.py`` is compiled with, replaced by the configured one.
SQLTEXT_PREFIX = "ncauthprefix_"


def compiled(
    stmt: sa.Select[tuple[object, ...]], dialect: sa.Dialect
) -> tuple[str, list[str] | None, dict[str, object], dict[str, str]]:
    """*stmt* as SQLAlchemy sends it to *dialect*'s driver before expanding ``IN``
    lists: (SQL, parameter names in order for a positional paramstyle, the constants,
    and for each ``IN`` list the text of one of its values with ``{name}`` for the
    parameter's name: ``%({name})s``, ``?``, or with psycopg's cast ``%({name})s::VARCHAR``)."""
    c = stmt.compile(dialect=dialect)
    params = c.construct_params(_check=False)
    text = str(c)
    expanding = {}
    for key in [k for k in params if f"__[POSTCOMPILE_{k}]" in text]:
        # SQLAlchemy's own expansion of a one-value list, cut out of the statement
        assert text.count("__[POSTCOMPILE_") == 1, "one IN list a statement"
        before, after = text.split(f"__[POSTCOMPILE_{key}]")
        one = c._process_parameters_for_postcompile({**params, key: ["x"]}).statement
        assert one.startswith(before) and one.endswith(after), key
        value = one[len(before) : len(one) - len(after)]
        expanding[key] = value.replace(f"{key}_1", "{name}")
    return (
        text,
        list(c.positiontup) if c.positiontup else None,
        {k: v for k, v in params.items() if v is not None},
        expanding,
    )


def sqltext_source() -> str:
    """The text of ``ncauth/sqltext.py``: every statement of :func:`statements`,
    compiled for each driver of ONESHOT_DRIVERS."""
    st = statements(Tables(SQLTEXT_PREFIX))
    lines = [
        '"""Every statement of ``ncauth.store.statements``, as SQLAlchemy compiles it for each',
        "driver ``oneshot.OneShotStore`` runs without SQLAlchemy; the table prefix is",
        "``PREFIX``. Generated: do not edit; ``python tests/test_generated_files.py`` writes it",
        'and the tests fail when it is stale."""',
        "",
        f"PREFIX = {SQLTEXT_PREFIX!r}",
        "#: dialect -> the driver's paramstyle",
        "PARAMSTYLE = {",
    ]
    dialects = {name: sa.create_engine(f"{driver}://").dialect for name, driver in ONESHOT_DRIVERS.items()}
    lines += [f"    {name!r}: {d.paramstyle!r}," for name, d in dialects.items()]
    lines += [
        "}",
        "#: dialect -> statement name -> (SQL, positional parameter names or None, constants,",
        "#: IN list -> the text of one value, ``{name}`` its parameter's name)",
        "STATEMENTS: dict[str, dict[str, tuple[str, list[str] | None, dict[str, object], dict[str, str]]]] = {",
    ]
    for name, d in dialects.items():
        lines.append(f"    {name!r}: {{")
        for key, stmt in st.items():
            text, order, constants, expanding = compiled(stmt, d)
            lines += [
                f"        {key!r}: (",
                f"            {text!r},",
                f"            {order!r},",
                f"            {constants!r},",
                f"            {expanding!r},",
                "        ),",
            ]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"
