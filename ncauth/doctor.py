"""``ncauth doctor``: check an installation the way a mail admin would by hand.

Each finding is one line, ``LEVEL subject: what is wrong — how to fix it``, where LEVEL is
OK, WARN, FAIL or SKIP (a check that does not apply here: no daemon configured, no
Dovecot installed). Checks are run for real, not reasoned out: the config is read as the
users that must read it (a forked child that drops to each user's uid and groups), the
database is asked for its grants, the socket is connected to and the daemon asked for its
counters, and Dovecot's own ``doveconf -n`` is read. Nothing printed holds a password:
database URLs are redacted and grant lines are never echoed (MariaDB's hold a password hash).

Exit status: 0 when nothing FAILed (warnings allowed; ``--strict`` counts them as
problems), 1 when something did, 78 when the config cannot be loaded at all.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TextIO

from ncauth import client, queries
from ncauth import config as config_mod
from ncauth.errors import ConfigError, NcauthError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ncauth.config import Config

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = ConfigError.exit_code

DOVECONF = "doveconf"
DOVEADM = "doveadm"
#: where the systemd unit may be (ncauth.service names the daemon's user)
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
#: the socket's mode that lets the owner and the group connect, nobody else
SOCKET_MODE = 0o660


class Finding(NamedTuple):
    level: str  # OK | WARN | FAIL | SKIP
    subject: str
    text: str

    def line(self) -> str:
        """One line of printable characters: names come from the database (a table is
        named by whoever holds Nextcloud's login) and from Dovecot, and a newline or a
        terminal escape in one must not forge or hide a finding."""
        text = f"{self.level:<4} {self.subject}: {self.text}"
        return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Options:
    config: str | None = None
    user: str | None = None  # the sample lookup
    dovecot_config: str | None = None  # doveconf -c / doveadm -c
    dovecot_user: str | None = None  # who runs checkpassword (Dovecot's auth process)
    dovecot_worker_user: str | None = None  # who runs the Lua passdb (auth-worker)
    daemon_user: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class Identity:
    """A user a part of the installation runs as, with the groups it really has."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    role: str  # e.g. "Dovecot's auth process (checkpassword)"

    @classmethod
    def of(cls, name: str, role: str, group: str = "", extra_groups: tuple[str, ...] = ()) -> Identity:
        pw = pwd.getpwnam(name)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
        groups = set(os.getgrouplist(name, gid)) | {grp.getgrnam(g).gr_gid for g in extra_groups}
        return cls(name, pw.pw_uid, gid, tuple(sorted(groups)), role)


@dataclass
class Passdb:
    """One passdb or userdb block of ``doveconf -n``, in the order Dovecot consults them."""

    kind: str  # passdb | userdb
    name: str
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def driver(self) -> str:
        return self.settings.get("driver", self.name)  # 2.4: ``passdb lua { }`` names its driver

    def text(self) -> str:
        return " ".join(self.settings.values())


@dataclass
class DovecotConf:
    version: str  # "2.3" | "2.4"
    path: str
    dbs: list[Passdb]
    settings: dict[str, str]  # top-level and nested settings, "service auth/user" style


# --- running ------------------------------------------------------------------------


def run(options: Options, out: TextIO = sys.stdout) -> int:
    """Run every check, print each finding as it comes; the exit status."""
    counts = {"OK": 0, "WARN": 0, "FAIL": 0, "SKIP": 0}

    def emit(findings: Iterator[Finding]) -> None:
        for f in findings:
            counts[f.level] += 1
            out.write(f.line() + "\n")
            out.flush()

    path = config_mod.config_path(options.config)
    config: Config | None = None
    try:
        config = config_mod.load(path)
        from ncauth.store import parse_url

        for url in config.nextcloud.database_urls:
            parse_url(url)
        emit(iter([Finding("OK", f"config {path}", "loads")]))
    except NcauthError as exc:
        emit(iter([Finding("FAIL", f"config {path}", f"{exc} — fix it, then run ncauth doctor again")]))
    dovecot = _doveconf(options)
    emit(dovecot_findings(options, config, dovecot))
    conf = dovecot if isinstance(dovecot, DovecotConf) else None
    if config is not None:
        emit(_readers(options, config, conf))
        emit(_database(config))
        emit(_socket(options, config, conf))
        if options.user:
            emit(_lookup(options, config, conf))
    problems = counts["FAIL"] + (counts["WARN"] if options.strict else 0)
    out.write(
        f"ncauth doctor: {counts['FAIL']} failed, {counts['WARN']} warnings, {counts['OK']} ok, "
        f"{counts['SKIP']} skipped\n"
    )
    if config is None:
        return EXIT_CONFIG
    return EXIT_PROBLEMS if problems else EXIT_OK


# --- as another user ----------------------------------------------------------------


def as_user(who: Identity, work: Callable[[], str]) -> str:
    """*work()* run in a child process with *who*'s uid, gid and groups: what it returned
    ("" for success), or why it failed. Permissions are then the kernel's verdict, with
    ACLs, parent directories and supplementary groups all counted."""
    if os.geteuid() == who.uid:
        return _guarded(work)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            os.setgroups(list(who.groups))
            os.setgid(who.gid)
            os.setuid(who.uid)
            message = _guarded(work)
        except BaseException as exc:
            message = f"as {who.name}: {type(exc).__name__}: {exc}"
        try:
            os.write(w, message.encode("utf-8", "replace")[:4000])
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as fh:
        chunks.append(fh.read())
    os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


def _guarded(work: Callable[[], str]) -> str:
    try:
        return work()
    except NcauthError as exc:
        return str(exc)
    except OSError as exc:
        return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")


def _unsearchable(path: str) -> str:
    """The first directory above *path* this process may not enter, or ""."""
    for parent in reversed(Path(path).resolve().parents):
        if not os.access(parent, os.X_OK):
            return str(parent)
    return ""


def _read_config(path: str, sqlite_file: str) -> Callable[[], str]:
    def work() -> str:
        if blocked := _unsearchable(path):
            return f"cannot enter directory {blocked}"
        with open(path, "rb"):
            pass
        config_mod.load(path)  # and what it reads in turn (config_php)
        if sqlite_file:
            with open(sqlite_file, "rb"):
                pass
        return ""

    return work


def _connect(path: str) -> Callable[[], str]:
    def work() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
        return ""

    return work


# --- who runs what ------------------------------------------------------------------


def _ncauth_passdb(conf: DovecotConf | None, prefix: str) -> Passdb | None:
    if conf is None:
        return None
    return next((db for db in conf.dbs if db.kind == "passdb" and _is_ncauth(db, prefix)), None)


def _is_ncauth(db: Passdb, prefix: str) -> bool:
    text = db.text()
    if db.driver in ("checkpassword", "lua"):
        return "ncauth" in text
    if db.driver == "sql":  # 2.3: args = .../ncauth-sql.conf.ext; 2.4: the query itself
        return "ncauth" in text or f"FROM {prefix}users u" in text
    return False


def _dovecot_user(options: Options, conf: DovecotConf | None, worker: bool) -> str:
    """Dovecot's auth process user (checkpassword runs there) or its auth-worker's (Lua)."""
    given = options.dovecot_worker_user if worker else options.dovecot_user
    if given:
        return given
    if conf is None:
        return ""
    service = "auth-worker" if worker else "auth"
    user = _doveconf_value(options, f"service/{service}/user")
    if user.startswith("$"):
        user = _doveconf_value(options, user.lstrip("$").replace("SET:", "")) or "dovecot"
    return user or "root"  # an empty service user means the master's: root


def _unit(name: str = "ncauth.service") -> dict[str, str]:
    """The ``Key=value`` lines of systemd unit *name* (``unit``: where it is), or {}."""
    for directory in UNIT_DIRS:
        unit = Path(directory) / name
        try:
            text = unit.read_text()
        except OSError:
            continue
        found = {"unit": str(unit)}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith(("#", ";")):
                found[key.strip()] = value.strip()
        return found
    return {}


def _identities(options: Options, config: Config, conf: DovecotConf | None) -> Iterator[Finding | Identity]:
    """Who must read the config: Dovecot's user for checkpassword, and the daemon's user."""
    ours = _ncauth_passdb(conf, config.nextcloud.table_prefix)
    if options.dovecot_user or (ours is not None and ours.driver == "checkpassword"):
        name = _dovecot_user(options, conf, worker=False)
        yield from _identity(name, "Dovecot's auth process (checkpassword)", "--dovecot-user")
    elif ours is None:
        yield Finding("SKIP", "config readers", "no ncauth passdb in Dovecot (give --dovecot-user)")
    else:
        yield Finding("SKIP", "config as Dovecot's user", f"{ours.driver} mode: Dovecot does not read it")
    if not config.daemon.socket:
        return
    unit = _unit()
    name = _daemon_user(options, unit)
    if not name:
        yield Finding("SKIP", "daemon user", "no ncauth.service with User= found: give --daemon-user")
        return
    source = "--daemon-user" if options.daemon_user else unit["unit"]
    group = "" if options.daemon_user else unit.get("Group", "")
    extra = () if options.daemon_user else tuple(unit.get("SupplementaryGroups", "").split())
    yield from _identity(name, "the daemon (ncauth serve)", source, group, extra)


def _daemon_user(options: Options, unit: dict[str, str] | None = None) -> str:
    """The daemon's user: ``--daemon-user``, else ``ncauth.service``'s ``User=``, else ""."""
    return options.daemon_user or (_unit() if unit is None else unit).get("User", "")


def _identity(
    name: str, role: str, source: str, group: str = "", extra: tuple[str, ...] = ()
) -> Iterator[Finding | Identity]:
    try:
        yield Identity.of(name, role, group, extra)
    except KeyError as exc:
        yield Finding("FAIL", f"user {name}", f"{role}: no such user or group {exc} ({source}) — create it")


def _readers(options: Options, config: Config, conf: DovecotConf | None) -> Iterator[Finding]:
    """The config (and an SQLite database) readable by every user that must read them."""
    from ncauth.sqlgen import dialect_of

    url = config.nextcloud.database_urls[0]
    sqlite_file = _sqlite_path(url) if dialect_of(url) == "sqlite" else ""
    for who in _identities(options, config, conf):
        if isinstance(who, Finding):
            yield who
            continue
        if os.geteuid() != 0 and os.geteuid() != who.uid:
            yield Finding(
                "SKIP", f"config as {who.name}", "run ncauth doctor as root to check as other users"
            )
            continue
        problem = as_user(who, _read_config(config.path, sqlite_file))
        subject = f"config {config.path} as {who.name}"
        if not problem:
            what = " and " + sqlite_file if sqlite_file else ""
            yield Finding("OK", subject, f"{who.role} can read it{what}")
            continue
        group = grp.getgrgid(who.gid).gr_name
        yield Finding(
            "FAIL",
            subject,
            f"{who.role}: {problem} — chown root:{group} {config.path} && chmod 0640 {config.path}"
            + (f" (and let {who.name} read {sqlite_file})" if sqlite_file else "")
            + " (directories above it need o+x or the group's x)",
        )


# --- database -----------------------------------------------------------------------


def _sqlite_path(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).database or ""


def _database(config: Config) -> Iterator[Finding]:
    from ncauth import store
    from ncauth.sqlgen import dialect_of

    for url in config.nextcloud.database_urls:
        shown = store.redact_url(url)
        dialect = dialect_of(url)
        if dialect == "sqlite":
            yield from _sqlite_file(_sqlite_path(url))
        try:
            engine = store.make_engine(url, config.nextcloud)
            try:
                with engine.connect() as conn:
                    yield Finding("OK", f"database {shown}", "answers")
                    yield from _prefix(conn, config, shown)
                    if dialect == "mysql":
                        yield from _mysql_grants(conn, config, url)
                    elif dialect == "postgresql":
                        yield from _postgres_grants(conn, config)
            finally:
                engine.dispose()
        except NcauthError as exc:
            yield Finding("FAIL", f"database {shown}", f"{exc} — install the driver or fix database_url")
        except Exception as exc:
            yield Finding(
                "FAIL",
                f"database {shown}",
                f"{queries.describe_error(exc)} — check the host, user, password and database in database_url",
            )


def _sqlite_file(path: str) -> Iterator[Finding]:
    try:
        st = os.stat(path)
    except OSError as exc:
        yield Finding(
            "FAIL", f"database file {path}", f"{exc.strerror} — point database_url at Nextcloud's .db"
        )
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IROTH:
        yield Finding(
            "WARN",
            f"database file {path}",
            f"readable by every user (mode {mode:04o}; it holds password hashes) — chmod o-rw {path} and "
            "grant the readers: setfacl -m u:dovecot:r (see ncauth sql)",
        )
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        yield Finding(
            "WARN", f"database file {path}", f"writable by others (mode {mode:04o}) — chmod go-w {path}"
        )


def _prefix(conn: sa.Connection, config: Config, shown: str) -> Iterator[Finding]:
    """``table_prefix`` names the tables that are there; if not, which prefixes would."""
    import sqlalchemy as sa

    from ncauth.sqlgen import ncauth_columns

    prefix = config.nextcloud.table_prefix
    tables = set(sa.inspect(conn).get_table_names())
    wanted = [prefix + name for name in ncauth_columns(config)]
    missing = [name for name in wanted if name not in tables]
    subject = f"table_prefix {prefix!r}"
    if not missing:
        yield Finding("OK", subject, f"{', '.join(wanted)} exist")
        return
    found = sorted(
        name[: -len("users")]
        for name in tables
        if name.endswith("users") and name[:-5] + "preferences" in tables
    )
    if f"{prefix}users" not in tables and found:
        fix = f"Nextcloud's tables are under {', '.join(repr(p) for p in found)}: set table_prefix = {found[0]!r}"
    elif found:
        fix = "upgrade Nextcloud or check that ncauth's database user may see them (ncauth sql)"
    else:
        fix = f"no Nextcloud tables in {shown}: is it Nextcloud's database (config.php dbname)?"
    yield Finding("FAIL", subject, f"missing {', '.join(missing)} — {fix}")


#: one grant line of MariaDB/MySQL ``SHOW GRANTS``: privileges, the object, who
_GRANT_RE = re.compile(r"GRANT (?P<privs>.+?) ON (?P<obj>\S+) TO (?P<who>\S+)(?P<rest>.*)", re.S)


class Grant(NamedTuple):
    privilege: str  # SELECT, INSERT, ALL PRIVILEGES, ...
    database: str  # "*" for every database
    table: str  # "*" for every table
    columns: frozenset[str] | None  # None: every column


def parse_grants(lines: list[str]) -> tuple[list[Grant], list[str]]:
    """``SHOW GRANTS`` lines as privileges on objects, and the roles granted."""
    grants: list[Grant] = []
    roles: list[str] = []
    for line in lines:
        m = _GRANT_RE.match(line)
        if not m:
            if line.startswith("GRANT "):
                roles.append(line[6:].split(" TO ", 1)[0].strip("`'"))
            continue
        database, _, table = m.group("obj").partition(".")
        database, table = (part.strip("`").replace("\\", "") for part in (database, table))
        for priv in _split_top(m.group("privs")):
            name, _, cols = priv.partition("(")
            columns = frozenset(c.strip(" `").lower() for c in cols.rstrip(") ").split(",")) if cols else None
            grants.append(Grant(name.strip().upper(), database, table, columns))
        if "WITH GRANT OPTION" in m.group("rest").upper():
            grants.append(Grant("GRANT OPTION", database, table, None))
    return grants, roles


def _split_top(text: str) -> list[str]:
    """*text* split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in [*parts, text[start:]] if p.strip()]


def grant_findings(
    grants: list[Grant], needed: dict[str, tuple[str, ...]], database: str, who: str, fix: str
) -> Iterator[Finding]:
    """What is missing from *needed* ({table: columns}), and what is granted beyond it."""
    subject = f"grants of {who}"

    def covers(g: Grant, table: str, column: str) -> bool:
        if g.privilege not in ("SELECT", "ALL", "ALL PRIVILEGES"):
            return False
        if g.database not in ("*", database) or g.table not in ("*", table):
            return False
        return g.columns is None or column in g.columns

    missing: list[str] = []
    for table, columns in needed.items():
        lacking = [c for c in columns if not any(covers(g, table, c) for g in grants)]
        if lacking:
            missing.append(f"SELECT ({', '.join(lacking)}) ON {database}.{table}")
    broader: list[str] = []
    for g in grants:
        where = f"{g.database}.{g.table}"
        if g.privilege == "USAGE":
            continue
        if g.privilege != "SELECT":
            broader.append(f"{g.privilege} ON {where}")
        elif g.table not in needed:
            broader.append(f"SELECT ON {where} (ncauth reads only {', '.join(needed)})")
        elif g.columns is None:
            broader.append(f"SELECT on every column of {where}")
        elif extra := sorted(g.columns - set(needed[g.table])):
            broader.append(f"SELECT ({', '.join(extra)}) ON {where}")
    if missing:
        yield Finding("FAIL", subject, f"missing {'; '.join(missing)} — {fix}")
    if broader:
        yield Finding(
            "WARN",
            subject,
            f"more than ncauth needs: {'; '.join(broader)} — use a read-only user with exactly the grants "
            f"of ncauth sql ({fix})",
        )
    if not missing and not broader:
        yield Finding("OK", subject, "exactly the SELECT grants ncauth sql gives, nothing more")


def _needed(config: Config) -> dict[str, tuple[str, ...]]:
    from ncauth.sqlgen import ncauth_columns

    prefix = config.nextcloud.table_prefix
    return {prefix + table: columns for table, columns in ncauth_columns(config).items()}


def _mysql_grants(conn: sa.Connection, config: Config, url: str) -> Iterator[Finding]:
    import sqlalchemy as sa

    current = str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar() or "")
    user, _, host = current.rpartition("@")
    lines = [str(row[0]) for row in conn.exec_driver_sql("SHOW GRANTS")]
    grants, roles = parse_grants(lines)
    database = sa.engine.make_url(url).database or ""
    fix = f"ncauth sql --ncauth-user {user} --host {host}; REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{user}'@'{host}' first"
    yield from grant_findings(grants, _needed(config), database, f"'{user}'@'{host}'", fix)
    for role in roles:
        yield Finding("WARN", f"grants of '{user}'@'{host}'", f"has role {role}, not examined — revoke it")


def _postgres_grants(conn: sa.Connection, config: Config) -> Iterator[Finding]:
    """PostgreSQL's privilege catalog, as grants on (table, columns) of the current user."""
    user = str(conn.exec_driver_sql("SELECT current_user").scalar())
    rows = conn.exec_driver_sql(
        "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
    ).scalar()
    grants: list[Grant] = []
    if rows:
        grants.append(Grant("SUPERUSER OR CREATEROLE OR CREATEDB", "*", "*", None))
    whole: set[tuple[str, str]] = set()
    for table, privilege in conn.exec_driver_sql(
        "SELECT table_name, privilege_type FROM information_schema.table_privileges "
        "WHERE grantee IN (current_user, 'PUBLIC') AND table_schema = current_schema()"
    ):
        whole.add((table, privilege))
        grants.append(Grant(str(privilege), "public", str(table), None))
    for (owned,) in conn.exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE tableowner = current_user AND schemaname = current_schema()"
    ):
        grants.append(Grant("OWNER", "public", str(owned), None))
    columns: dict[tuple[str, str], set[str]] = {}
    for table, column, privilege in conn.exec_driver_sql(
        "SELECT table_name, column_name, privilege_type FROM information_schema.column_privileges "
        "WHERE grantee IN (current_user, 'PUBLIC') AND table_schema = current_schema()"
    ):
        if (table, privilege) not in whole:  # a table grant also shows on each column
            columns.setdefault((str(table), str(privilege)), set()).add(str(column))
    grants += [Grant(p, "public", t, frozenset(cols)) for (t, p), cols in columns.items()]
    fix = f'ncauth sql --dialect postgresql --ncauth-user {user}; REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{user}" first'
    yield from grant_findings(grants, _needed(config), "public", f'"{user}"', fix)


# --- the daemon's socket ------------------------------------------------------------


def _socket(options: Options, config: Config, conf: DovecotConf | None) -> Iterator[Finding]:
    path = config.daemon.socket
    if not path:
        yield Finding("SKIP", "daemon", "no [daemon] socket in the config (checkpassword decides in-process)")
        return
    subject = f"socket {path}"
    start = "start ncauth.socket (systemctl enable --now ncauth.socket) or run ncauth serve"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        yield Finding("FAIL", subject, f"missing — {start}")
        return
    except OSError as exc:
        yield Finding("FAIL", subject, f"{exc.strerror} — {start}")
        return
    if not stat.S_ISSOCK(st.st_mode):
        yield Finding("FAIL", subject, f"not a socket — remove it and {start}")
        return
    yield from _socket_mode(config, path, st)
    yield from _socket_directories(path, st)
    yield from _listener(options, path, st)
    yield from _peers(options, config, conf, path)
    try:
        answer = client.request(path, "STATS", connect_timeout=config.daemon.connect_timeout, reply_timeout=5)
    except client.DaemonUnavailable as exc:
        yield Finding(
            "FAIL",
            "daemon",
            f"not answering ({exc}) — {start}; see journalctl -u ncauth.service",
        )
        return
    if answer.verdict != "OK":
        yield Finding(
            "FAIL",
            "daemon",
            f"answers {answer.verdict}: {answer.fields.get('reason', '?')} — "
            f"let uid {os.geteuid()} connect ([daemon] allowed_users) or see journalctl -u ncauth.service",
        )
        return
    f = answer.fields
    yield Finding("OK", "daemon", f"answers (up {f.get('uptime', '?')} s, {f.get('requests', '?')} requests)")


def _socket_mode(config: Config, path: str, st: os.stat_result) -> Iterator[Finding]:
    """Owner, group and mode: ncauth.socket's when it listens there, else ``[daemon]``'s."""
    subject = f"socket {path}"
    mode = stat.S_IMODE(st.st_mode)
    owner = _name(pwd.getpwuid, st.st_uid)
    group = _name(grp.getgrgid, st.st_gid)
    unit = _unit("ncauth.socket")
    want_group = (
        unit.get("SocketGroup", "") if unit.get("ListenStream") == path else config.daemon.socket_group
    )
    facts = f"{owner}:{group} {mode:04o}"
    if mode & 0o007:
        yield Finding(
            "WARN",
            subject,
            f"{facts}: every local user may connect (the daemon still checks peers) — "
            f"chmod 0660 (ncauth.socket: SocketMode=0660)",
        )
    elif mode & 0o060 != 0o060 and want_group:
        yield Finding("FAIL", subject, f"{facts}: the group cannot connect — chmod 0660 {path}")
    elif want_group and group != want_group:
        yield Finding(
            "FAIL",
            subject,
            f"{facts}: group should be {want_group} ([daemon] socket_group / SocketGroup=) — "
            f"chgrp {want_group} {path}",
        )
    else:
        yield Finding("OK", subject, facts)


def _socket_directories(path: str, st: os.stat_result) -> Iterator[Finding]:
    """Who besides root and the socket's owner could put a socket of their own at *path*
    and answer every login: writers of its directory (a sticky bit does not help there:
    they may create it while the daemon restarts), or of a directory above without the
    sticky bit (they may rename the whole branch). The owner of any of these directories
    is one whatever its mode and sticky bit (an owner may chmod, and may remove entries of
    a sticky directory); and both the path as written and the one its symlinks lead to
    are walked, since either is where a replacement would go (review5)."""
    trusted = {0, st.st_uid}
    start = os.path.dirname(os.path.abspath(path))
    seen: set[str] = set()
    for directory in (start, os.path.realpath(start)):
        parent = True
        while directory not in seen:
            seen.add(directory)
            try:
                d = os.stat(directory)
            except OSError:
                break
            mode = stat.S_IMODE(d.st_mode)
            writers = []
            if d.st_uid not in trusted:
                writers.append(f"user {_name(pwd.getpwuid, d.st_uid)} (its owner)")
            if parent or not mode & stat.S_ISVTX:
                if d.st_gid != 0 and mode & stat.S_IWGRP:
                    writers.append(f"group {_name(grp.getgrgid, d.st_gid)}")
                if mode & stat.S_IWOTH:
                    writers.append("every local user")
            if writers:
                yield Finding(
                    "WARN",
                    f"socket {path}",
                    f"{directory} ({mode:04o}) is writable by {' and '.join(writers)}, who could put a "
                    "socket of their own there and answer every login — keep the socket in a directory "
                    "only root and its owner may write (ncauth.socket: /run/ncauth)",
                )
                return
            if directory == "/":
                break
            directory, parent = os.path.dirname(directory), False


def _listener(options: Options, path: str, st: os.stat_result) -> Iterator[Finding]:
    """Whose socket it is, and whose process listens on it (``SO_PEERCRED``: the process
    that called listen(), systemd itself under socket activation): root or the daemon's
    user, nobody else. A socket of anyone else answers for every login Dovecot asks it."""
    subject = f"socket {path}"
    name = _daemon_user(options)
    try:
        trusted = {0, pwd.getpwnam(name).pw_uid} if name else {0}
    except KeyError:
        trusted = {0}  # the daemon's user is reported missing with the config's readers
    want = f"root or the daemon's user {name}" if name else "root (give --daemon-user for the daemon's user)"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
            pid, uid, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError:
        pid = uid = -1  # nobody listening: the daemon check below says so
    for what, owner in (("owned by", st.st_uid), (f"listened on by pid {pid}, which runs as", uid)):
        if owner >= 0 and owner not in trusted:
            yield Finding(
                "FAIL" if name else "WARN",
                subject,
                f"{what} user {_name(pwd.getpwuid, owner)}, not {want}: a socket of anyone else "
                "answers for every login — stop whatever serves it, remove it and start ncauth.socket",
            )


def _name(lookup: Callable[[int], object], number: int) -> str:
    try:
        return str(lookup(number)[0])  # type: ignore[index]
    except KeyError:
        return str(number)


def _peers(options: Options, config: Config, conf: DovecotConf | None, path: str) -> Iterator[Finding]:
    """The users that must connect may, by the socket's permissions and by allowed_users."""
    allowed = set()
    for name in config.daemon.allowed_users:
        try:
            allowed.add(int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid)
        except KeyError:
            yield Finding(
                "WARN", "[daemon] allowed_users", f"no such user {name!r} (the daemon skips it) — remove it"
            )
    ours = _ncauth_passdb(conf, config.nextcloud.table_prefix)
    clients: list[tuple[str, bool]] = []
    if ours is not None and ours.driver == "lua":
        clients.append(("Dovecot's auth-worker (Lua)", True))
    elif ours is not None and ours.driver == "checkpassword" and config.daemon.forward != "never":
        clients.append(("Dovecot's auth process (checkpassword relay)", False))
    elif options.dovecot_user:
        clients.append(("the checkpassword user (--dovecot-user)", False))
    for role, worker in clients:
        name = _dovecot_user(options, conf, worker)
        try:
            who = Identity.of(name, role)
        except KeyError:
            yield Finding("FAIL", f"user {name}", f"{role}: no such user — create it or fix Dovecot's config")
            continue
        if who.uid not in allowed:
            yield Finding(
                "FAIL",
                "[daemon] allowed_users",
                f"{name} ({role}) is not allowed — add {name!r} to allowed_users and reload (systemctl reload ncauth)",
            )
        if os.geteuid() != 0 and os.geteuid() != who.uid:
            yield Finding(
                "SKIP", f"socket {path} as {name}", "run ncauth doctor as root to connect as other users"
            )
            continue
        problem = as_user(who, _connect(path))
        if problem:
            yield Finding(
                "FAIL",
                f"socket {path} as {name}",
                f"{role} cannot connect: {problem} — make the socket's group one of {name}'s groups "
                "(socket_group / SocketGroup=) with mode 0660",
            )
        else:
            yield Finding("OK", f"socket {path} as {name}", f"{role} can connect")


# --- Dovecot ------------------------------------------------------------------------


def _doveconf_argv(options: Options, *args: str) -> list[str]:
    conf = ["-c", options.dovecot_config] if options.dovecot_config else []
    return [DOVECONF, *conf, *args]


def _doveconf_value(options: Options, name: str) -> str:
    proc = subprocess.run(
        _doveconf_argv(options, "-h", name), capture_output=True, text=True, timeout=30, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _doveconf(options: Options) -> DovecotConf | Finding:
    """Dovecot's running config, or the finding that there is none."""
    if not shutil.which(DOVECONF):
        return Finding("SKIP", "dovecot", "not installed (no doveconf)")
    proc = subprocess.run(
        _doveconf_argv(options, "-n"), capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        if os.geteuid() != 0 and "ermission denied" in said:
            return Finding("SKIP", "dovecot", f"doveconf -n: {said} (run ncauth doctor as root)")
        return Finding("FAIL", "dovecot", f"doveconf -n: {said} — fix Dovecot's config")
    return parse_doveconf(proc.stdout)


def parse_doveconf(text: str) -> DovecotConf:
    """``doveconf -n`` output: its version and path, passdbs and userdbs in order, settings."""
    lines = text.splitlines()
    m = re.match(r"# (\d+\.\d+)\S* .*?: (\S+)", lines[0] if lines else "")
    version, path = (m.group(1), m.group(2)) if m else ("?", "?")
    dbs: list[Passdb] = []
    settings: dict[str, str] = {}
    stack: list[tuple[str, Passdb | None]] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            words = line[:-1].split()
            db = None
            if words and words[0] in ("passdb", "userdb"):
                db = Passdb(words[0], words[1] if len(words) > 1 else "")
                dbs.append(db)
            stack.append((" ".join(words), db))
        elif line == "}":
            if stack:
                stack.pop()
        else:
            key, sep, value = line.partition(" = ")
            if not sep:
                continue
            inner = next((db for _, db in reversed(stack) if db is not None), None)
            if inner is not None:
                inner.settings[key.strip()] = value.strip()
            settings["/".join([*(name for name, _ in stack), key.strip()])] = value.strip()
    return DovecotConf(version, path, dbs, settings)


def dovecot_findings(
    options: Options, config: Config | None, conf: DovecotConf | Finding
) -> Iterator[Finding]:
    """The ncauth passdb is there, in a mode this Dovecot has, and nothing answers before it."""
    if isinstance(conf, Finding):
        yield conf
        return
    subject = f"dovecot {conf.version} ({conf.path})"
    prefix = config.nextcloud.table_prefix if config else "oc_"
    passdbs = [db for db in conf.dbs if db.kind == "passdb"]
    ours = _ncauth_passdb(conf, prefix)
    if ours is None:
        yield Finding(
            "FAIL",
            subject,
            f"no ncauth passdb in doveconf -n ({', '.join(db.driver for db in passdbs) or 'no passdb'}) — "
            "ncauth dovecot-config --mode "
            + ("lua" if conf.version == "2.4" else "checkpassword")
            + " --output /etc/dovecot/conf.d/ncauth.conf.ext, !include it and reload Dovecot",
        )
        return
    mode = ours.driver
    if conf.version == "2.4" and mode == "checkpassword":
        yield Finding(
            "FAIL", subject, "checkpassword on Dovecot 2.4 (removed there) — ncauth dovecot-config --mode lua"
        )
    elif mode not in ("checkpassword", "lua", "sql"):
        yield Finding(
            "FAIL", subject, f"ncauth passdb with driver {mode} — use ncauth dovecot-config's snippet"
        )
    else:
        yield Finding("OK", subject, f"ncauth passdb in {mode} mode")
    yield from _order(subject, passdbs, ours, prefix)
    userdbs = [db for db in conf.dbs if db.kind == "userdb"]
    if not any(_is_ncauth(db, prefix) for db in userdbs) and mode != "sql":
        yield Finding(
            "WARN",
            subject,
            "no ncauth userdb: LMTP delivery and doveadm user find nobody — include the whole snippet",
        )
    if config is not None:
        yield from _mode_config(subject, mode, ours, config)


def _order(subject: str, passdbs: list[Passdb], ours: Passdb, prefix: str) -> Iterator[Finding]:
    """No passdb answers before ncauth's; one after it gets the logins ncauth refused."""
    index = passdbs.index(ours)
    for i, db in enumerate(passdbs):
        if db is ours or _is_ncauth(db, prefix) or db.settings.get("master") == "yes":
            continue
        if db.settings.get("deny") == "yes":
            continue  # a deny list answers only to refuse
        name = f"passdb {db.driver}" + (f" {db.settings['args']}" if db.settings.get("args") else "")
        if i < index:
            yield Finding(
                "FAIL",
                subject,
                f"{name} comes before ncauth's and answers first — remove it (Debian: comment out "
                "!include auth-system.conf.ext in conf.d/10-auth.conf) and reload Dovecot",
            )
        else:
            yield Finding(
                "WARN",
                subject,
                f"{name} comes after ncauth's: logins ncauth refuses are tried there too — remove it "
                "unless that is meant",
            )


def _mode_config(subject: str, mode: str, ours: Passdb, config: Config) -> Iterator[Finding]:
    """The passdb reads this config, and Lua talks to this config's socket."""
    if mode == "checkpassword":
        m = re.search(r"--config (\S+)", ours.settings.get("args", ""))
        used = m.group(1).replace("%%", "%") if m else config_mod.DEFAULT_PATH
        if os.path.realpath(used) != os.path.realpath(config.path):
            yield Finding(
                "WARN",
                subject,
                f"checkpassword reads {used}, not {config.path} — check that one: ncauth doctor --config {used}",
            )
        sm = re.search(r"--socket (\S+)", ours.settings.get("args", ""))
        relays_to = sm.group(1).replace("%%", "%") if sm else ""
        if relays_to and relays_to != config.daemon.socket:
            yield Finding(
                "FAIL",
                subject,
                f"checkpassword asks the daemon at {relays_to}, the config's [daemon] socket is "
                f"{config.daemon.socket or 'not set'} — write the snippet again: "
                "ncauth dovecot-config --mode checkpassword --output …",
            )
    if mode == "lua":
        if not config.daemon.socket:
            yield Finding(
                "FAIL", subject, "Lua mode needs the daemon: set [daemon] socket and start ncauth.socket"
            )
            return
        m = re.search(
            r"(?:file=|^)(/\S+\.lua)", ours.settings.get("args", "") or ours.settings.get("lua_file", "")
        )
        try:
            script = Path(m.group(1)).read_text() if m else ""
        except OSError:
            script = ""
        sm = re.search(r'local NCAUTH_SOCKET = "([^"]*)"', script)
        if sm and sm.group(1) != config.daemon.socket:
            yield Finding(
                "FAIL",
                subject,
                f"{m.group(1) if m else 'ncauth.lua'} talks to {sm.group(1)}, the daemon listens on "
                f"{config.daemon.socket} — write it again: ncauth dovecot-config --mode lua --output …",
            )


# --- a sample lookup ----------------------------------------------------------------


def _lookup(options: Options, config: Config, conf: DovecotConf | None) -> Iterator[Finding]:
    """The user found through the path Dovecot's userdb uses, then by Dovecot itself."""
    user = options.user or ""
    ours = _ncauth_passdb(conf, config.nextcloud.table_prefix)
    lua = ours is not None and ours.driver == "lua"
    via_daemon = bool(config.daemon.socket) and (lua or config.daemon.forward != "never")
    subject = f"lookup {user}"
    answered = False
    if via_daemon:
        try:
            answer = client.request(config.daemon.socket, "LOOKUP", user, "service=doctor", reply_timeout=15)
            f = answer.fields
            yield _lookup_finding(
                user, "via the daemon", answer.verdict, f.get("user", ""), f.get("reason", "")
            )
            answered = True
        except client.DaemonUnavailable as exc:
            if lua or config.daemon.forward == "always":
                yield Finding("FAIL", subject, f"via the daemon: not answering ({exc}) — start ncauth.socket")
                answered = True
    if not answered:  # checkpassword deciding in-process (forward = "never", or "auto" without a daemon)
        from ncauth.policy import Authenticator

        try:
            auth = Authenticator(config)
            try:
                v = auth.lookup(user)
            finally:
                auth.store.close()
        except NcauthError as exc:
            yield Finding("FAIL", subject, f"in-process: {exc}")
        else:
            yield _lookup_finding(user, "in-process", v.outcome.wire, v.user, v.reason)
    yield from _doveadm_user(options, conf, user)


def _lookup_finding(user: str, path: str, verdict: str, canonical: str, reason: str) -> Finding:
    subject = f"lookup {user}"
    if verdict == "OK":
        return Finding("OK", subject, f"{path}: user={canonical}")
    fix = {
        "UNKNOWN": f"check [accounts] domains and match, and the account in Nextcloud (ncauth lookup {user} traces it)",
        "TEMPFAIL": "see the database and daemon findings above",
    }.get(verdict, "see ncauth lookup for the trace")
    return Finding("FAIL", subject, f"{path}: {verdict} ({reason}) — {fix}")


def _doveadm_user(options: Options, conf: DovecotConf | None, user: str) -> Iterator[Finding]:
    subject = f"doveadm user {user}"
    if conf is None or not shutil.which(DOVEADM):
        yield Finding("SKIP", subject, "no Dovecot (see the dovecot finding)")
        return
    argv = [DOVEADM, *(["-c", options.dovecot_config] if options.dovecot_config else []), "user", user]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    said = " ".join((proc.stderr or proc.stdout).split())
    said = re.sub(r"password=\S*", "password=***", said)[:300]
    if proc.returncode == 0:
        yield Finding("OK", subject, "Dovecot finds the user")
    elif proc.returncode == 67:
        yield Finding("FAIL", subject, "Dovecot does not know the user — check the userdb findings above")
    elif "connect(" in said or "No such file" in said or "Connection refused" in said:
        yield Finding("SKIP", subject, f"Dovecot is not running ({said[:120]})")
    else:
        yield Finding("FAIL", subject, f"exit {proc.returncode}: {said} — see Dovecot's log")
