"""What ncauth reads from Nextcloud's tables, and how the rows become records.

The statements themselves are SQLAlchemy objects in ``ncauth.store`` (the one place SQL
is written); this module holds what both ways of running them share: each query's
name and parameters, the exact comparisons in Python that a database collation may
blur, and the records. ``store.Store`` runs the statements through SQLAlchemy (the
daemon, the CLI); ``oneshot.OneShotStore`` runs the very same statements, compiled by
SQLAlchemy into ``ncauth/sqltext.py``, through the driver alone, for a process that
decides one login and exits (checkpassword), where importing SQLAlchemy would cost
more than the decision.

Standard library only: checkpassword imports this before it knows whether it needs a
database at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ncauth.errors import ConfigError

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ncauth.records import NamedTuple  # typing's, without its start-up cost

if TYPE_CHECKING:
    from ncauth.config import NextcloudSection
    from ncauth.quota import QuotaSettings

#: A row as the driver returns it: the statement's columns, in order.
Row = Sequence[Any]
#: (statement name, parameters) for one statement of a batch run in one connection
Call = tuple[str, dict[str, object]]

#: Distinct users a diagnostic query reads at most.
CANDIDATES = 50
#: MySQL/MariaDB "Illegal mix of collations" (2, 3, n operands): see :func:`uncomparable`.
UNCOMPARABLE = {1267, 1270, 1271}
#: The ``files`` app settings ``User::getQuota()`` reads (lib/private/User/User.php).
QUOTA_APPCONFIG = ("default_quota", "allow_unlimited_quota", "quota_preset")


# NamedTuples, not dataclasses: importing ``dataclasses`` (and ``inspect``) would cost
# a one-shot checkpassword milliseconds.


class UserRow(NamedTuple):
    uid: str
    uid_lower: str
    password: str
    enabled: bool
    second_factors: int


class TokenRow(NamedTuple):
    id: int
    uid: str
    login_name: str
    type: int
    expires: int | None
    password_invalid: bool
    #: the login password encrypted with the token (None: the token stores none)
    stored_password: str | None = None
    private_key: str | None = None


def uncomparable(orig: object) -> bool:
    """Is *orig* MySQL's "Illegal mix of collations" for a value ncauth bound (a 4-byte
    character against a utf8mb3 column): the value can be in no row, so it matches
    nobody? The same errors also come from two columns that cannot be compared with each
    other (``oc_users`` and ``oc_preferences`` converted to different collations): that is
    the database's state, not the login's, and must stay an outage - read as "matches
    nobody" it made every login an unknown user (exit 1, "wrong password"). MySQL names
    each operand's coercibility in the message; a bound value is the ``COERCIBLE`` one,
    columns are ``IMPLICIT`` (these words are not translated with lc_messages)."""
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in UNCOMPARABLE and "COERCIBLE" in " ".join(map(str, args[1:]))


def describe_error(exc: BaseException | None) -> str:
    """A one-line, password-free description of a database error (SQLAlchemy's, whose
    statement and parameters are cut off, or the driver's own)."""
    if exc is None:
        return "no database URL configured"
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    for word in ("[SQL:", "(Background on this error"):
        text = text.split(word, 1)[0].strip()
    return f"{type(orig).__name__}: {text}"[:300]


def connect_args(backend: str, section: NextcloudSection) -> dict[str, object]:
    """The driver's arguments for ncauth's timeouts on a database of *backend*."""
    connect = max(1, math.ceil(section.connect_timeout))
    query = max(1, math.ceil(section.query_timeout))
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


def sqlite_read_only(database: str, shown: str) -> str:
    """The ``file:`` URI (without its query) that opens the SQLite file *database*
    read-only, for both stores: a mistyped path is an error instead of a new, empty
    database, and Nextcloud's file is never written. A missing file is a ConfigError
    naming it (*shown*: the configured URL, password-free), and so is a relative path.
    Leading slashes collapse to one, as the kernel reads them (in a URI "//x" would be an
    authority), and the three characters a SQLite URI path gives meaning to (``%``, ``?``,
    ``#``) are escaped."""
    if not database.startswith("/"):
        # os.path.abspath would read it from each process's own working directory:
        # Dovecot's auth process, the daemon and `ncauth verify` could open three files
        raise ConfigError(
            f"[nextcloud] database_url {shown!r}: {database!r} is a relative path, which each "
            "process would read from its own working directory (Dovecot's, the daemon's and "
            "yours differ): give the absolute path, e.g. sqlite:////var/www/nextcloud/data/owncloud.db"
        )
    path = "/" + os.path.abspath(database).lstrip("/")
    if not os.path.exists(path):
        raise ConfigError(
            f"[nextcloud] database_url {shown!r}: {path} does not exist (ncauth opens "
            "Nextcloud's SQLite database read-only and never creates it: Nextcloud keeps it in its "
            "data directory as <dbname>.db)"
        )
    return "file:" + path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


class Reader:
    """Every query ncauth runs, by the name of its statement in ``store.statements``.
    Subclasses run a batch of statements in one connection (:meth:`_fetch`)."""

    #: the users table's name, for traces
    users_table: str
    #: connections found dead and replaced (``ncauth status``)
    reconnects = 0

    def prepare(self) -> None:
        """Find what is wrong with the configuration before the first query (a missing
        driver or SQLite file: a ConfigError); nothing to do unless a store says so."""

    def _fetch(self, calls: Sequence[Call], nothing: list[list[Row]]) -> list[list[Row]]:
        """The rows of each statement of *calls*, run in one connection on the first live
        database; any database problem is TemporaryFailure, except a value the database
        cannot even compare (MySQL's collation errors), which matches nothing: *nothing*."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe_urls(self) -> str:
        raise NotImplementedError

    def _one(self, name: str, **params: object) -> list[Row]:
        return self._fetch([(name, params)], [[]])[0]

    # -- users -----------------------------------------------------------------------

    def users(self, uid_lower: str) -> list[UserRow]:
        """Rows whose ``uid_lower`` is exactly *uid_lower* (compared again in Python:
        MySQL collations ignore accents and trailing spaces)."""
        rows = _user_rows(self._one("users_by_uid_lower", uid_lower=uid_lower))
        return [r for r in rows if r.uid_lower == uid_lower]

    def user_by_uid(self, uid: str) -> UserRow | None:
        """The row whose ``uid`` is exactly *uid* (the primary key), if any."""
        rows = [r for r in _user_rows(self._one("user_by_uid", uid=uid)) if r.uid == uid]
        return rows[0] if len(rows) == 1 else None

    def all_users(self) -> list[UserRow]:
        """Every row of the users table (for listing accounts; one query)."""
        return _user_rows(self._one("all_users"))

    def emails(self) -> list[tuple[str, str]]:
        """(uid, address) of every ``settings``/``email`` preference that is set."""
        return [(userid, value) for userid, value in self._one("emails") if value]

    def members(self, gids: Iterable[str]) -> set[str]:
        """The uids in any of the groups *gids* (group ids compared exactly here)."""
        wanted = set(gids)
        if not wanted:
            return set()
        rows = self._one("members", gids=sorted(wanted))
        return {uid for uid, gid in rows if gid in wanted}

    def uids_by_email(self, email: str) -> list[str]:
        """The distinct users whose ``settings``/``email`` preference is *email* once
        both are lower-cased: what ``IUserManager::getByEmail`` finds
        (``AllConfig::getUsersForUserValueCaseInsensitive``: Nextcloud stores the address
        lower-cased and compares it with the lower-cased value). Without the optional
        PostgreSQL index (docs/performance.md) this reads every e-mail row, as Nextcloud's own
        lookup does. The database's answer is only a candidate list (MySQL collations ignore
        trailing spaces and accents): the exact comparison runs here, over every
        candidate, so a padded near-duplicate cannot hide a second owner."""
        wanted = email.lower()
        rows = self._one("uids_by_email", email=wanted)
        return sorted({userid for userid, value in rows if (value or "").lower() == wanted})

    def email_of(self, uid: str) -> str:
        """The e-mail address *uid* set in Nextcloud, or ""."""
        rows = self._one("email_of", uid=uid)
        return (rows[0][0] if rows else None) or ""

    def tokens(self, token_hashes: Iterable[str]) -> list[TokenRow]:
        """Live-format (version 2) app-token rows whose ``token`` is one of the hashes."""
        wanted = list(token_hashes)
        if not wanted:
            return []
        return [
            TokenRow(
                id=id_,
                uid=uid,
                login_name=login_name or "",
                type=int(type_ or 0),
                expires=expires,
                password_invalid=bool(invalid),
                stored_password=password,
                private_key=private_key,
            )
            for id_, uid, login_name, type_, expires, invalid, password, private_key in self._one(
                "tokens", tokens=wanted
            )
        ]

    def groups_of(self, uid: str) -> set[str]:
        """The Nextcloud groups *uid* is a member of, compared exactly here (a MySQL
        collation would also find the memberships of 'Alice ' for 'alice')."""
        return {gid for row_uid, gid in self._one("groups_of", uid=uid) if row_uid == uid}

    def known_elsewhere(self, uid: str) -> bool:
        """Whether Nextcloud keeps preferences for a user whose lower-cased uid is *uid*: a user of another backend
        (LDAP, SAML…) when oc_users has no such row. For diagnostics only."""
        # exactly, in Python: MariaDB finds 'alice' for 'alice ' (PAD SPACE collations)
        return any(userid.lower() == uid for (userid,) in self._one("known_elsewhere", uid=uid))

    def quota_settings(self, uid: str) -> QuotaSettings:
        """What Nextcloud's quota for *uid* depends on: the ``files``/``quota`` preference and
        the ``files`` app's quota settings, in one connection. The ``lazy`` flag of newer
        ``oc_appconfig`` tables is not filtered on: ``getAppValue`` loads lazy values too."""
        from ncauth.quota import QuotaSettings

        pref, app = self._fetch([("quota_of", {"uid": uid}), ("quota_appconfig", {})], [[], []])
        # exact comparisons again in Python: MySQL collations ignore case and trailing spaces
        users = [value for userid, value in pref if userid == uid]
        values = {key: value for key, value in app if key in QUOTA_APPCONFIG}
        return QuotaSettings(
            user_quota=users[0] if len(users) == 1 and users[0] is not None else None,
            default_quota=values.get("default_quota"),
            allow_unlimited_quota=values.get("allow_unlimited_quota"),
            quota_preset=values.get("quota_preset"),
        )


def _user_rows(rows: Iterable[Row]) -> list[UserRow]:
    """User rows of the ``users_*`` statements: uid, uid_lower, password, the
    ``core``/``enabled`` preference and the count of second factors."""
    return [
        UserRow(
            uid=uid,
            uid_lower=uid_lower or "",
            password=password or "",
            # OC\User\User::isEnabled(): enabled unless core/enabled holds anything but 'true'
            enabled=enabled is None or enabled == "true",
            second_factors=int(second or 0),
        )
        for uid, uid_lower, password, enabled, second in rows
    ]
