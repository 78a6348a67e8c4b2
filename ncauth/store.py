"""Read-only access to the Nextcloud tables ncauth needs, through SQLAlchemy Core.

Only the columns read are declared, under the configured table prefix. Each
decision costs one indexed query for the user (with the ``enabled`` flag and the
second-factor count folded in as sub-queries) plus one for app passwords when the
password could be one. Every database problem becomes TemporaryFailure with the
URL's password redacted and the statement parameters hidden, so neither a
password nor an app-token hash can reach a log line through an exception.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ncauth.config import NextcloudSection
from ncauth.errors import ConfigError, TemporaryFailure
from ncauth.quota import QuotaSettings

T = TypeVar("T")

#: Distinct users a diagnostic query reads at most.
_CANDIDATES = 50


@dataclass(frozen=True)
class UserRow:
    uid: str
    uid_lower: str
    password: str
    enabled: bool
    second_factors: int


@dataclass(frozen=True)
class TokenRow:
    id: int
    uid: str
    login_name: str
    type: int
    expires: int | None
    password_invalid: bool
    #: the login password encrypted with the token (None: the token stores none)
    stored_password: str | None = None
    private_key: str | None = None


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
    connect = max(1, math.ceil(section.connect_timeout))
    query = max(1, math.ceil(section.query_timeout))
    backend = url.get_backend_name()
    if backend == "mysql":
        return {
            "connect_timeout": connect,
            "read_timeout": query,
            "write_timeout": query,
            "charset": "utf8mb4",
        }
    if backend == "postgresql":
        # statement_timeout bounds the server's work; libpq has no read timeout of its
        # own, so TCP keepalives and tcp_user_timeout bound a server that vanished
        # mid-query (ignored on Unix sockets, where the kernel reports it at once).
        return {
            "connect_timeout": connect,
            "options": f"-c statement_timeout={query * 1000}",
            "keepalives": 1,
            "keepalives_idle": query,
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": (query + connect) * 1000,
        }
    if backend == "sqlite":
        return {"timeout": section.query_timeout}
    return {}


def parse_url(text: str) -> sa.URL:
    """*text* parsed by the parser that connects (SQLAlchemy's ``make_url``); a
    malformed URL is a configuration error that shows no password."""
    try:
        url = sa.make_url(text)
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
        url = sa.make_url(text)
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
            "(use mysql+pymysql://, postgresql+psycopg:// or sqlite:///)"
        ) from None
    except Exception as exc:  # a bad option
        raise TemporaryFailure(f"cannot set up {redact_url(url_text)}: {type(exc).__name__}: {exc}") from None


#: how to get a PostgreSQL driver, for the messages below
_PSYCOPG = "pip install 'ncauth[postgresql]' (Debian: apt install python3-psycopg)"


def _missing_driver(url: sa.URL, url_text: str, exc: ImportError) -> str:
    """What to write instead, when *url*'s driver module is not installed."""
    backend, driver = url.get_backend_name(), url.get_driver_name()
    where = f"[nextcloud] database_url {redact_url(url_text)!r}"
    missing = f"its driver module {exc.name or driver!r} is not installed"
    if backend in ("mysql", "mariadb") and driver != "pymysql":
        return f"{where}: {missing}; write it as mysql+pymysql://… (ncauth comes with PyMySQL)"
    if backend == "postgresql" and driver != "psycopg":
        return f"{where}: {missing}; write it as postgresql+psycopg://… and install psycopg: {_PSYCOPG}"
    if backend == "postgresql":
        return f"{where}: {missing}: {_PSYCOPG}"
    return f"{where}: {missing}"


def _sqlite_read_only(url: sa.URL, url_text: str) -> sa.URL:
    """*url* opened read-only (SQLite's ``mode=ro`` URI), so that a mistyped path is an
    error instead of a new, empty database, and Nextcloud's file is never written. A
    file that is not there is a ConfigError naming it; an in-memory or URI-form
    database is left as given, with ``mode=ro`` added to the URI form."""
    import os
    from urllib.parse import quote

    database = url.database or ""
    if url.query.get("uri") in ("true", "1"):
        return url.update_query_dict({"mode": "ro"})
    if database in ("", ":memory:"):
        return url
    # Leading slashes collapse to one, as the kernel reads them: in a URI, "//x" would be an authority.
    path = "/" + os.path.abspath(database).lstrip("/")
    if not os.path.exists(path):
        raise ConfigError(
            f"[nextcloud] database_url {redact_url(url_text)!r}: {path} does not exist (ncauth opens "
            "Nextcloud's SQLite database read-only and never creates it: Nextcloud keeps it in its "
            "data directory as <dbname>.db)"
        )
    return url.set(database=f"file:{quote(path)}").update_query_dict({"mode": "ro", "uri": "true"})


class Store:
    """The Nextcloud database: user rows, app tokens, two-factor state."""

    def __init__(self, section: NextcloudSection) -> None:
        for url in section.database_urls:  # a malformed URL is a config error now, not an outage later
            parse_url(url)
        self.section = section
        self.tables = Tables(section.table_prefix)
        self._engines: dict[str, Engine] = {}
        self._dead_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.reconnects = 0

    # -- plumbing --------------------------------------------------------------------

    def _engine(self, url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                engine = self._engines[url] = make_engine(url, self.section)
            return engine

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
                if _errno(exc) in _UNCOMPARABLE:
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
        raise TemporaryFailure(f"database: {_describe(last)}") from None

    def prepare(self) -> None:
        """Set up every URL's engine now (connecting to nothing): a missing driver or
        SQLite file is a ConfigError at start, not a temporary failure at each login."""
        for url in self.section.database_urls:
            self._engine(url)

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()

    def describe_urls(self) -> str:
        return ", ".join(redact_url(u) for u in self.section.database_urls)

    # -- queries ---------------------------------------------------------------------

    def users(self, uid_lower: str) -> list[UserRow]:
        """Rows whose ``uid_lower`` is exactly *uid_lower* (compared again in Python:
        MySQL collations ignore accents and trailing spaces)."""
        return [
            r for r in self._user_rows(self.tables.users.c.uid_lower == uid_lower) if r.uid_lower == uid_lower
        ]

    def user_by_uid(self, uid: str) -> UserRow | None:
        """The row whose ``uid`` is exactly *uid* (the primary key), if any."""
        rows = [r for r in self._user_rows(self.tables.users.c.uid == uid) if r.uid == uid]
        return rows[0] if len(rows) == 1 else None

    def all_users(self) -> list[UserRow]:
        """Every row of the users table (for listing accounts; one query)."""
        return self._user_rows(sa.true())

    def emails(self) -> list[tuple[str, str]]:
        """(uid, address) of every ``settings``/``email`` preference that is set."""
        p = self.tables.preferences
        stmt = sa.select(p.c.userid, p.c.configvalue).where(p.c.appid == "settings", p.c.configkey == "email")
        rows: Sequence[Any] = self._run(lambda c: c.execute(stmt).all(), [])
        return [(r.userid, r.configvalue) for r in rows if r.configvalue]

    def members(self, gids: Iterable[str]) -> set[str]:
        """The uids in any of the groups *gids* (group ids compared exactly here)."""
        gu, wanted = self.tables.group_user, set(gids)
        stmt = sa.select(gu.c.uid, gu.c.gid).where(gu.c.gid.in_(sorted(wanted)))
        rows: Sequence[Any] = self._run(lambda c: c.execute(stmt).all(), [])
        return {r.uid for r in rows if r.gid in wanted}

    def _user_rows(self, condition: sa.ColumnElement[bool]) -> list[UserRow]:
        """User rows matching *condition*, with the ``enabled`` flag and the count of
        second factors folded in as sub-queries (one round trip per decision)."""
        t = self.tables
        u, p, tf = t.users, t.preferences, t.twofactor_providers
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
        stmt = (
            # no LIMIT: every candidate row gets the exact comparison (one row per user at most
            # can match, so this is bounded by the number of users, never by what a user sends)
            sa.select(
                u.c.uid, u.c.uid_lower, u.c.password, enabled.label("enabled"), second.label("second")
            ).where(condition)
        )
        rows: Sequence[Any] = self._run(lambda c: c.execute(stmt).all(), [])
        return [
            UserRow(
                uid=r.uid,
                uid_lower=r.uid_lower or "",
                password=r.password or "",
                # OC\User\User::isEnabled(): enabled unless core/enabled holds anything but 'true'
                enabled=r.enabled is None or r.enabled == "true",
                second_factors=int(r.second or 0),
            )
            for r in rows
        ]

    def uids_by_email(self, email: str) -> list[str]:
        """The distinct users whose ``settings``/``email`` preference is *email* once
        both are lower-cased: what ``IUserManager::getByEmail`` finds
        (``AllConfig::getUsersForUserValueCaseInsensitive`` compares ``LOWER(configvalue)``).
        The database's answer is only a candidate list (MySQL collations ignore
        trailing spaces and accents): the exact comparison runs here, over every
        candidate, so a padded near-duplicate cannot hide a second owner."""
        p = self.tables.preferences
        wanted = email.lower()
        stmt = sa.select(p.c.userid, p.c.configvalue).where(
            p.c.appid == "settings", p.c.configkey == "email", sa.func.lower(p.c.configvalue) == wanted
        )
        rows: Sequence[Any] = self._run(lambda c: c.execute(stmt).all(), [])
        return sorted({r.userid for r in rows if (r.configvalue or "").lower() == wanted})

    def email_of(self, uid: str) -> str:
        """The e-mail address *uid* set in Nextcloud, or ""."""
        p = self.tables.preferences
        stmt = sa.select(p.c.configvalue).where(
            p.c.userid == uid, p.c.appid == "settings", p.c.configkey == "email"
        )
        return self._run(lambda c: c.execute(stmt).scalar(), None) or ""

    def tokens(self, token_hashes: Iterable[str]) -> list[TokenRow]:
        """Live-format (version 2) app-token rows whose ``token`` is one of the hashes."""
        a = self.tables.authtoken
        stmt = (
            sa.select(
                a.c.id,
                a.c.uid,
                a.c.login_name,
                a.c.type,
                a.c.expires,
                a.c.password_invalid,
                a.c.password,
                a.c.private_key,
            )
            .where(a.c.token.in_(list(token_hashes)), a.c.version == 2)
            .limit(5)
        )
        rows: Sequence[Any] = self._run(lambda c: c.execute(stmt).all(), [])
        return [
            TokenRow(
                id=r.id,
                uid=r.uid,
                login_name=r.login_name or "",
                type=int(r.type or 0),
                expires=r.expires,
                password_invalid=bool(r.password_invalid),
                stored_password=r.password,
                private_key=r.private_key,
            )
            for r in rows
        ]

    def groups_of(self, uid: str) -> set[str]:
        """The Nextcloud groups *uid* is a member of, compared exactly here (a MySQL
        collation would also find the memberships of 'Alice ' for 'alice')."""
        gu = self.tables.group_user
        stmt = sa.select(gu.c.uid, gu.c.gid).where(gu.c.uid == uid)
        rows: Sequence[Any] = self._run(lambda c: c.execute(stmt).all(), [])
        return {r.gid for r in rows if r.uid == uid}

    def known_elsewhere(self, uid: str) -> bool:
        """Whether Nextcloud keeps preferences for a user whose lower-cased uid is *uid*: a user of another backend
        (LDAP, SAML…) when oc_users has no such row. For diagnostics only."""
        p = self.tables.preferences
        stmt = sa.select(p.c.userid).where(p.c.userid == uid).distinct().limit(_CANDIDATES)
        # exactly, in Python: MariaDB finds 'alice' for 'alice ' (PAD SPACE collations)
        found: Sequence[str] = self._run(lambda c: c.execute(stmt).scalars().all(), [])
        return any(f.lower() == uid for f in found)


#: MySQL/MariaDB "Illegal mix of collations" (2, 3, n operands): the value cannot be
#: stored in the column's character set, so no row can hold it.
_UNCOMPARABLE = {1267, 1270, 1271}


def _errno(exc: sa.exc.DBAPIError) -> object:
    args = getattr(exc.orig, "args", ())
    return args[0] if args else None


def _describe(exc: Exception | None) -> str:
    """A one-line, password-free description of a database error."""
    if exc is None:
        return "no database URL configured"
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    for word in ("[SQL:", "(Background on this error"):
        text = text.split(word, 1)[0].strip()
    return f"{type(orig).__name__}: {text}"[:300]


#: The ``files`` app settings ``User::getQuota()`` reads (lib/private/User/User.php).
_QUOTA_APPCONFIG = ("default_quota", "allow_unlimited_quota", "quota_preset")


def quota_settings(store: Store, uid: str) -> QuotaSettings:
    """What Nextcloud's quota for *uid* depends on: the ``files``/``quota`` preference and
    the ``files`` app's quota settings, in one connection. The ``lazy`` flag of newer
    ``oc_appconfig`` tables is not filtered on: ``getAppValue`` loads lazy values too."""
    p, a = store.tables.preferences, store.tables.appconfig
    pref = sa.select(p.c.userid, p.c.configvalue).where(
        p.c.userid == uid, p.c.appid == "files", p.c.configkey == "quota"
    )
    app = sa.select(a.c.configkey, a.c.configvalue).where(
        a.c.appid == "files", a.c.configkey.in_(_QUOTA_APPCONFIG)
    )

    def work(conn: sa.Connection) -> QuotaSettings:
        # exact comparisons again in Python: MySQL collations ignore case and trailing spaces
        users = [r.configvalue for r in conn.execute(pref) if r.userid == uid]
        values = {r.configkey: r.configvalue for r in conn.execute(app) if r.configkey in _QUOTA_APPCONFIG}
        return QuotaSettings(
            user_quota=users[0] if len(users) == 1 and users[0] is not None else None,
            default_quota=values.get("default_quota"),
            allow_unlimited_quota=values.get("allow_unlimited_quota"),
            quota_preset=values.get("quota_preset"),
        )

    return store._run(work, QuotaSettings())
