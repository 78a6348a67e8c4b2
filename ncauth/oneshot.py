"""The store of a process that decides one login and exits (checkpassword without the daemon).

Importing SQLAlchemy costs such a process more than its whole decision (about 100 ms
and 20 MiB, against a 90 ms argon2 run), while a pool, reflection of the dialect and a
compiler are of no use to it. So it runs ``store.statements``, compiled by SQLAlchemy
into ``ncauth/sqltext.py``, through the driver alone, with the arguments SQLAlchemy
would connect with; ``queries.Reader`` (shared with the SQLAlchemy store) turns the rows
into answers: PyMySQL, psycopg (where SQLAlchemy has its dialect: 2.0 on) or sqlite3.
Anything this module does not handle exactly as SQLAlchemy would (another driver, an
unusual URL or table prefix) is left to ``store.Store``: ``store_for`` picks.
tests/test_oneshot.py pins the SQL text, the expanded parameters and the connection
arguments to SQLAlchemy's own.

Standard library only at module level; the driver is imported when first connecting.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ncauth import sqltext
from ncauth.errors import ConfigError, TemporaryFailure
from ncauth.queries import (
    Call,
    Reader,
    Row,
    connect_args,
    describe_error,
    sqlite_read_only,
    uncomparable,
)

if TYPE_CHECKING:
    from ncauth.config import NextcloudSection

#: The URLs handled here: a subset of SQLAlchemy's form (engine/url.py ``_parse_url``)
#: without the characters whose reading differs between versions or parsers. A ``%`` in
#: the database part is one: SQLAlchemy 2.1 unquotes it, 1.4 and 2.0 (Debian 12, 13) do not.
#: A line break in the query is another: SQLAlchemy reads the query as ``.*`` with
#: ``re.match``, so its query ends there and the rest of the URL is dropped (review5).
#: An ``@`` in the query is a third: SQLAlchemy's user info runs to the first ``@``
#: anywhere (its password is ``[^@]*``, across ``/`` and ``?``), so without a password
#: before the host, ``u@db:5432/nc?x=a@b`` is its user ``u@db``, password
#: ``5432/nc?x=a`` and host ``b``: another server than the one read here (review6).
_URL = re.compile(
    r"(?P<scheme>mysql\+pymysql|postgresql\+psycopg|sqlite|sqlite\+pysqlite)://"
    r"(?:(?P<username>[^:/@?#\[\]]*)(?::(?P<password>[^/@?#\[\]]*))?@)?"
    r"(?P<host>[^:/@?#\[\]]*)(?::(?P<port>[0-9]+))?"
    r"(?:/(?P<database>[^?#@%\[\]]*))?"
    r"(?:\?(?P<query>[^#\n@]*))?"
)
#: URL query keys passed on as they are (strings) to PyMySQL, as SQLAlchemy does
_MYSQL_QUERY = {"unix_socket", "charset"}
#: URL query keys passed on as they are to psycopg (libpq's own), as SQLAlchemy's
#: ``_psycopg_common`` does; ``host`` only as one socket directory or host name without
#: ``,`` or ``:`` (SQLAlchemy reads those as several hosts, or a port)
_POSTGRESQL_QUERY = {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name"}
#: table prefixes whose table names no dialect quotes (lower-case, not a leading digit)
_PLAIN_PREFIX = re.compile(r"(?:[a-z][a-z0-9_]*)?", re.ASCII)
_FOUND_ROWS = 2  # PyMySQL's constants.CLIENT.FOUND_ROWS, which SQLAlchemy always sets


class Target:
    """One database URL as its driver's ``connect`` arguments."""

    def __init__(self, url: str, dialect: str, args: list[str], kwargs: dict[str, Any]) -> None:
        self.url, self.dialect, self.args, self.kwargs = url, dialect, args, kwargs

    def driver(self) -> Any:
        """The driver's module: ``connect`` and the DB-API exception classes."""
        if self.dialect == "mysql":
            return pymysql()
        if self.dialect == "postgresql":
            try:
                import psycopg
            except ImportError as exc:  # installed (target() found it) but cannot load
                from ncauth.store import redact_url

                raise ConfigError(
                    f"[nextcloud] database_url {redact_url(self.url)!r}: its driver module "
                    f"'psycopg' cannot be imported ({exc})"
                ) from None
            return psycopg
        import sqlite3

        return sqlite3

    def prepare(self) -> list[str]:
        """The driver's positional ``connect`` arguments: a SQLite file read-only, as
        ``store.Store`` opens it (a missing file is a ConfigError naming it)."""
        if self.dialect == "sqlite":
            return [sqlite_read_only(self.args[0], self.url) + "?mode=ro"]
        return self.args

    def connect(self) -> Any:
        driver, args = self.driver(), self.prepare()
        saved = _skip_default_cas() if self.dialect == "mysql" else None
        try:
            try:
                return driver.connect(*args, **self.kwargs)
            except RuntimeError:  # PyMySQL wants cryptography for MySQL 8's RSA exchange
                if self.dialect != "mysql" or not load_rsa():
                    raise
                return driver.connect(*args, **self.kwargs)
        finally:
            if saved is not None:
                _restore(saved)


#: OpenSSL's environment variables for its default CA locations
_CA_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def _skip_default_cas() -> dict[str, str | None]:
    """Point OpenSSL's default CA locations at nothing while PyMySQL connects; returns what
    to restore. PyMySQL 2.2 asks for TLS wherever the server offers it, with a context from
    ``ssl.create_default_context()`` that it then sets to CERT_NONE (no CA is given in a URL
    handled here): building it reads the system's whole CA bundle (~50 ms a login) for
    certificates nobody checks. Without the bundle the same TLS runs, verified as little
    as before; a URL with ``ssl_ca`` goes to SQLAlchemy's store and is untouched."""
    saved = {name: os.environ.get(name) for name in _CA_ENV}
    for name in _CA_ENV:
        os.environ[name] = "/nonexistent/ncauth-no-default-cas"
    return saved


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


#: What PyMySQL imports at once but a URL handled here needs rarely: ``cryptography``
#: (10 MiB and milliseconds) only for the RSA exchange of MySQL 8's
#: ``caching_sha2_password``/``sha256_password`` full authentication over plain TCP.
#: Never ``ssl``: PyMySQL 2.2 asks every server that offers TLS for it unless told not
#: to, and without ``ssl`` it would talk plain TCP where SQLAlchemy's store uses TLS.
_PYMYSQL_SPARED = ("cryptography",)


def pymysql() -> Any:
    """PyMySQL, imported without the modules of _PYMYSQL_SPARED (it imports them as
    optional: without them it marks RSA unavailable). When a server does ask for
    the RSA exchange, :func:`load_rsa` loads cryptography and the connection is retried."""
    if "pymysql" not in sys.modules:
        spared = [name for name in _PYMYSQL_SPARED if name not in sys.modules]
        for name in spared:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
        try:
            import pymysql  # type: ignore[import-untyped]  # noqa: F401
        finally:
            for name in spared:
                del sys.modules[name]
    return sys.modules["pymysql"]


def load_rsa() -> bool:
    """Give PyMySQL the cryptography it was imported without (re-running its auth
    module, whose functions it looks up on each connection); True if it now has it."""
    auth = sys.modules.get("pymysql._auth")
    if auth is None or auth._have_cryptography:
        return False
    import importlib

    return bool(importlib.reload(auth)._have_cryptography)


def target(url: str, section: NextcloudSection) -> Target | None:
    """*url* as SQLAlchemy's dialect would connect to it, with ncauth's timeouts; None
    when it is not one of the forms handled here."""
    m = _URL.fullmatch(url)
    if m is None:
        return None
    parts = {k: (_unquote(v) if k in ("username", "password") else v) for k, v in m.groupdict().items()}
    query = _query(parts["query"])
    if parts["scheme"] == "postgresql+psycopg":
        return _postgresql(url, parts, query, section)
    if parts["scheme"] == "mysql+pymysql":
        if not parts["database"] or not _plain_query(query, _MYSQL_QUERY):
            return None
        kwargs = _translated(parts, "database")
        kwargs.update(query)
        kwargs["client_flag"] = _FOUND_ROWS
        kwargs.update(connect_args("mysql", section))
        return Target(url, "mysql", [], kwargs)
    database = parts["database"]
    if (
        query
        or parts["username"] is not None
        or parts["host"]
        or parts["port"]
        or not database
        or database == ":memory:"
    ):
        return None
    kwargs = {"check_same_thread": False, "uri": True, **connect_args("sqlite", section)}
    return Target(url, "sqlite", [database], kwargs)


def _postgresql(
    url: str, parts: dict[str, str | None], query: list[tuple[str, str]], section: NextcloudSection
) -> Target | None:
    """psycopg's ``connect`` arguments as SQLAlchemy's psycopg dialect makes them
    (``_psycopg_common.create_connect_args``), or None where it could read them otherwise.
    Only where that dialect exists for the SQLAlchemy installed (2.0 on; 1.4 has none, so
    the daemon would refuse the URL) and psycopg is installed (else SQLAlchemy's store
    names the package to install)."""
    from importlib.util import find_spec

    from ncauth.config import _postgresql_scheme

    if (
        not parts["database"]
        or not _plain_query(query, _POSTGRESQL_QUERY)
        or any(k == "host" and ("," in v or ":" in v) for k, v in query)
        or _postgresql_scheme() != "postgresql+psycopg"
        or find_spec("psycopg") is None
    ):
        return None
    kwargs = _translated(parts, "dbname")
    kwargs.update(query)
    kwargs.update(connect_args("postgresql", section))
    return Target(url, "postgresql", [], kwargs)


def _plain_query(query: list[tuple[str, str]], allowed: set[str]) -> bool:
    """Each key once, and each one the driver takes as a string, as SQLAlchemy passes it."""
    keys = [k for k, _ in query]
    return len(set(keys)) == len(keys) and set(keys) <= allowed


def _translated(parts: dict[str, str | None], database: str) -> dict[str, Any]:
    """SQLAlchemy's ``URL.translate_connect_args(username="user", database=database)``:
    host, database, user, password and port, each left out where unset or empty."""
    return {
        key: value
        for key, value in (
            ("host", parts["host"]),
            (database, parts["database"]),
            ("user", parts["username"]),
            ("password", parts["password"]),
            ("port", int(parts["port"]) if parts["port"] else None),
        )
        if value
    }


def _unquote(text: str | None) -> str | None:
    """SQLAlchemy's reading of a percent-encoded URL part (``urllib.parse.unquote``),
    which is imported only for a part that needs it: it imports ``ipaddress``."""
    if not text or "%" not in text:
        return text
    from urllib.parse import unquote

    return unquote(text)


def _query(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    from urllib.parse import parse_qsl

    return parse_qsl(text)


def unsupported(section: NextcloudSection) -> str:
    """Why :class:`OneShotStore` cannot serve *section* exactly as ``store.Store`` would, or ""."""
    if not section.database_urls:
        return "no database URL"
    if not _PLAIN_PREFIX.fullmatch(section.table_prefix):
        return f"table prefix {section.table_prefix!r} needs quoting"
    for url in section.database_urls:
        if target(url, section) is None:
            return "a database URL of another form"
    return ""


def store_for(section: NextcloudSection) -> Reader:
    """The cheapest store that reads *section*'s database exactly as the daemon's does."""
    if not unsupported(section):
        return OneShotStore(section)
    from ncauth.store import Store

    return Store(section)


class OneShotStore(Reader):
    """``store.statements`` through the driver alone: one connection, kept until
    :meth:`close`; the URLs tried in order, as ``store.Store`` does."""

    def __init__(self, section: NextcloudSection) -> None:
        self.section = section
        self.users_table = section.table_prefix + "users"
        self._targets = [t for t in (target(u, section) for u in section.database_urls) if t is not None]
        self._conn: tuple[Target, Any] | None = None

    def prepare(self) -> None:
        for t in self._targets:
            t.prepare()

    def _fetch(self, calls: Sequence[Call], nothing: list[list[Row]]) -> list[list[Row]]:
        last: BaseException | None = None
        for t in self._targets:
            driver = t.driver()
            try:
                conn = self._connection(t)
                cursor = conn.cursor()
                try:
                    out = []
                    for name, params in calls:
                        cursor.execute(*bind(t.dialect, name, params, self.section.table_prefix))
                        out.append(list(cursor.fetchall()))
                finally:
                    cursor.close()
                conn.rollback()  # as SQLAlchemy's pool does when a connection is returned
                return out
            except driver.Error as exc:
                if uncomparable(exc):
                    return nothing
                last = exc
                self.close()
                if isinstance(exc, driver.OperationalError | driver.InterfaceError):
                    self.reconnects += 1
                    continue
                break
        raise TemporaryFailure(f"database: {describe_error(last)}") from None

    def _connection(self, t: Target) -> Any:
        if self._conn is None or self._conn[0] is not t:
            self.close()
            self._conn = (t, t.connect())
        return self._conn[1]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn[1].close()
            except Exception:  # noqa: S110 - a connection that is gone needs no closing
                pass

    def describe_urls(self) -> str:
        from ncauth.store import redact_url

        return ", ".join(redact_url(u) for u in self.section.database_urls)


def bind(dialect: str, name: str, params: dict[str, object], prefix: str) -> tuple[str, Any]:
    """(SQL, parameters) of statement *name* as SQLAlchemy hands them to the driver:
    the table prefix in place, each ``IN`` list expanded into one parameter per value."""
    text, order, constants, expanding = sqltext.STATEMENTS[dialect][name]
    text = text.replace(sqltext.PREFIX, prefix)
    values = {**constants, **params}
    names = list(order) if order is not None else None
    positional = sqltext.PARAMSTYLE[dialect] == "qmark"
    for key, one in expanding.items():
        value = values.pop(key)
        assert isinstance(value, list | tuple) and value, f"{name}: {key} needs a non-empty list"
        expanded = [f"{key}_{i}" for i in range(1, len(value) + 1)]
        values.update(zip(expanded, value, strict=True))
        text = text.replace(f"__[POSTCOMPILE_{key}]", ", ".join(one.format(name=k) for k in expanded))
        if names is not None:
            i = names.index(key)
            names[i : i + 1] = expanded
    if positional:
        assert names is not None
        return text, tuple(values[k] for k in names)
    return text, values
