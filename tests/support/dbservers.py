"""Throwaway database servers for the test-suite (in the order README's "Run the tests" gives).

Why this exists: ncauth's store is only proven against a real MariaDB (and PostgreSQL), including
what happens when the server goes away and comes back. A mail admin's Debian box has no Docker, so
the server most runs will get is a private ``mariadbd`` started from the local binaries in a short
temp dir under /tmp; an explicitly given server and testcontainers come first when available.

Order for MariaDB: ``NCAUTH_TEST_DATABASE_URL`` (an existing server; databases are created on it and
dropped again) → testcontainers ``mariadb:11.4`` if a Docker engine answers → :class:`LocalMariaDB`
→ :class:`DatabaseUnavailable`. For PostgreSQL: ``NCAUTH_TEST_POSTGRES_URL`` → :class:`LocalPostgres`
→ :class:`DatabaseUnavailable`. Skipping versus failing (``CI``/``NCAUTH_REQUIRE_DB``) is conftest's job.

Usage::

    try:
        server = mariadb_server()              # started; close it (or use it in ``with``)
    except DatabaseUnavailable as exc:
        pytest.skip(str(exc))                  # or fail under CI
    with server:
        url = server.create_database("ncauth_t1")   # mysql+pymysql://root@127.0.0.1:PORT/ncauth_t1
        server.stop(); server.start()          # UnsupportedOperation unless the server is ours
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

MARIADB_IMAGE = "mariadb:11.4"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
_CONTAINER_ROOT_PASSWORD = "ncauth-test"
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")
# Small and quick, and like Debian's packaged server where it matters to ncauth (utf8mb4).
# flush-at-commit=2 still survives kill() (the OS has the log); only a machine crash loses data.
_MARIADB_OPTIONS = (
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=2",
    "--skip-log-bin",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
)
# fsync=off loses data only when the machine crashes, never when the server is killed.
_POSTGRES_OPTIONS = ("-c", "fsync=off", "-c", "shared_buffers=16MB")


class DatabaseUnavailable(RuntimeError):
    """No server could be provided (or started); conftest skips on it, or fails under CI."""


class UnsupportedOperation(RuntimeError):
    """The server is not ours to stop or kill (external, container); tests skip on it."""


class Server:
    """What every provider hands out: URLs to a database, and SQL run as the admin user."""

    dialect: str  # SQLAlchemy backend name: "mysql" or "postgresql"
    description: str
    _admin_database: str | None = None  # where admin statements run (PostgreSQL needs one)

    def __init__(self) -> None:
        self._created: list[str] = []

    def _base_url(self) -> URL:
        """TCP URL with the admin credentials; url() swaps in the database and user."""
        raise NotImplementedError

    def url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        """SQLAlchemy URL for `database`; user/password default to the admin's."""
        return _render(self._base_url(), database, user, password)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, database: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement as admin in autocommit mode; returns its rows (if any)."""
        admin = _render(self._base_url(), database or self._admin_database, None, None)
        engine = sqlalchemy.create_engine(admin, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                # no_parameters: without params a literal % must not be taken for a placeholder
                options = {"no_parameters": True} if params is None else {}
                result = conn.exec_driver_sql(sql, params, execution_options=options)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def create_database(self, name: str) -> str:
        """Create an empty database (replacing a leftover of a crashed run); returns its URL."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"database name {name!r}: use letters, digits and _ only")
        self.execute(self._drop_sql(name))
        self.execute(f"CREATE DATABASE {self._quote(name)}")
        self._created.append(name)
        return self.url(name)

    def _quote(self, name: str) -> str:
        return f"`{name}`" if self.dialect == "mysql" else f'"{name}"'

    def _drop_sql(self, name: str) -> str:
        force = " WITH (FORCE)" if self.dialect == "postgresql" else ""
        return f"DROP DATABASE IF EXISTS {self._quote(name)}{force}"

    def stop(self) -> None:
        """Shut the server down cleanly (only for servers started here)."""
        raise UnsupportedOperation(f"stop() is not supported on {self.description}")

    def start(self) -> None:
        """Start the server again after stop()/kill() (only for servers started here)."""
        raise UnsupportedOperation(f"start() is not supported on {self.description}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (only for servers started here)."""
        raise UnsupportedOperation(f"kill() is not supported on {self.description}")

    def is_running(self) -> bool:
        """Whether the server process is alive (only for servers started here)."""
        raise UnsupportedOperation(f"is_running() is not supported on {self.description}")

    def close(self) -> None:
        """Release the server; nothing to do unless it is ours or we created databases on it."""

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ExternalServer(Server):
    """A server someone else runs (env URL): we only add databases to it and drop them again."""

    def __init__(self, url: str, admin_database: str | None) -> None:
        super().__init__()
        self._url = make_url(url)
        self.dialect = self._url.get_backend_name()
        self._admin_database = admin_database
        self.description = f"the external server {self._url.render_as_string(hide_password=True)}"

    def _base_url(self) -> URL:
        return self._url

    def close(self) -> None:
        """Drop what the tests created, so a shared server is left as it was."""
        while self._created:
            self.execute(self._drop_sql(self._created.pop()))


class ContainerServer(Server):
    """MariaDB in a testcontainers container; stopping it would change its mapped port."""

    dialect = "mysql"

    def __init__(self, container: Any) -> None:
        super().__init__()
        self.container = container
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(container.port))
        self._url = URL.create(
            "mysql+pymysql", username="root", password=_CONTAINER_ROOT_PASSWORD, host=host, port=port
        )
        self.description = f"the {MARIADB_IMAGE} container at {host}:{port}"

    def _base_url(self) -> URL:
        return self._url

    def close(self) -> None:
        self.container.stop()


@dataclass
class _Handle:
    """The running process, shared with the finalizer so cleanup never needs the server object."""

    popen: subprocess.Popen[bytes] | None = None


class _LocalServer(Server):
    """A server process of our own in a private temp dir: start, stop, kill, restart, clean up."""

    _stop_signal: signal.Signals

    def __init__(self, prefix: str) -> None:
        super().__init__()
        # /tmp, not $TMPDIR or pytest's tmp_path: Unix socket paths must stay under 108 bytes.
        self.tmpdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.tmpdir.chmod(0o755)  # the socket must be reachable for user dovecot
        self.datadir = self.tmpdir / "data"
        self.log_path = self.tmpdir / "server.log"
        self.port = _free_port()
        self._initialised = False
        self._started_once = False
        self._handle = _Handle()
        self._finalizer = weakref.finalize(self, _reap, self._handle, self.tmpdir)

    def _initialise(self) -> None:
        """Create the datadir (once; restarts reuse it)."""
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        """Extra Popen arguments, e.g. dropping root for PostgreSQL."""
        return {}

    def _ping(self) -> None:
        """Raise unless the server accepts a connection (over its own socket, never a stranger's port)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start, or start again on the same datadir, port and socket; wait until it answers."""
        if self.is_running():
            return
        if not self._initialised:
            self._initialise()
            self._initialised = True
        for _ in range(5):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as log:
                self._handle.popen = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.tmpdir,
                    start_new_session=True,
                    **self._popen_kwargs(),
                )
            if self._wait_ready(offset):
                self._started_once = True
                return
            if self._started_once:  # a restart must keep its port: clients hold URLs to it
                raise DatabaseUnavailable(f"port {self.port} was taken while {self.description} was down")
            self.port = _free_port()
        raise DatabaseUnavailable(f"{self.description}: no free port after 5 attempts")

    def _wait_ready(self, log_offset: int) -> bool:
        """True when it answers, False if the port was taken; DatabaseUnavailable otherwise."""
        popen = self._handle.popen
        assert popen is not None
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                tail = self._log_tail(log_offset)
                if "Address already in use" in tail:
                    return False
                raise DatabaseUnavailable(
                    f"{self.description} exited with {popen.returncode} while starting; log:\n{tail}"
                )
            try:
                self._ping()
                return True
            except Exception as exc:  # every driver error means "not yet"
                last_error = exc
            time.sleep(0.05)
        _kill_group(popen)
        raise DatabaseUnavailable(
            f"{self.description} did not answer within {START_TIMEOUT:.0f} s ({last_error}); "
            f"log:\n{self._log_tail(log_offset)}"
        )

    def _log_tail(self, offset: int, lines: int = 25) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Clean shutdown (clients then get "connection refused"); SIGKILL if it hangs."""
        popen = self._handle.popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(self._stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(STOP_TIMEOUT)
        _kill_group(popen)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self._handle.popen is not None:
            _kill_group(self._handle.popen)

    def is_running(self) -> bool:
        return self._handle.popen is not None and self._handle.popen.poll() is None

    def close(self) -> None:
        """Kill the process group and remove the temp dir; data is thrown away, so no clean shutdown."""
        self._finalizer()

    def __enter__(self) -> _LocalServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self


class LocalMariaDB(_LocalServer):
    """A private mariadbd from the local binaries, on a Unix socket and a free 127.0.0.1 port."""

    dialect = "mysql"
    _stop_signal = signal.SIGTERM  # mariadbd's clean shutdown; it drops open connections

    def __init__(self) -> None:
        self._install_db = _find_binary("mariadb-install-db")
        self._mariadbd = _find_binary("mariadbd")
        super().__init__("ncmdb")
        self.socket_path = str(self.tmpdir / "mysqld.sock")
        self.description = f"local mariadbd in {self.tmpdir}"

    def _user_options(self) -> list[str]:
        # --no-defaults must come first, or /etc/mysql (and the box's own server) leak in.
        return ["--no-defaults", f"--datadir={self.datadir}", f"--tmpdir={self.tmpdir / 'tmp'}"]

    def _initialise(self) -> None:
        (self.tmpdir / "tmp").mkdir()
        user = pwd.getpwuid(os.geteuid()).pw_name
        # "normal" gives root@localhost an empty password instead of unix_socket, which PyMySQL lacks.
        command = [
            self._install_db,
            *self._user_options(),
            f"--user={user}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_MARIADB_OPTIONS,
        ]
        _run_or_unavailable(command, self.tmpdir, {})

    def _command(self) -> list[str]:
        as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root unless told
        return [
            self._mariadbd,
            *self._user_options(),
            *as_root,
            f"--socket={self.socket_path}",
            f"--pid-file={self.tmpdir / 'mysqld.pid'}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            *_MARIADB_OPTIONS,
        ]

    def _ping(self) -> None:
        conn = pymysql.connect(unix_socket=self.socket_path, user="root", password="", connect_timeout=1)
        try:
            conn.ping(reconnect=False)
        finally:
            conn.close()

    def _base_url(self) -> URL:
        return URL.create("mysql+pymysql", username="root", host="127.0.0.1", port=self.port)


class LocalPostgres(_LocalServer):
    """A private PostgreSQL (trust auth) from /usr/lib/postgresql/*/bin; never runs as root."""

    dialect = "postgresql"
    _admin_database = "postgres"
    _stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for pooled clients to leave

    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401  (the optional "postgresql" extra)
        except ImportError as exc:
            raise DatabaseUnavailable(f"psycopg is not installed ({exc})") from exc
        self._bindir = _postgres_bindir()
        self._runas = _unprivileged_user() if os.geteuid() == 0 else None
        super().__init__("ncpg")
        if self._runas is not None:
            os.chown(self.tmpdir, self._runas.pw_uid, self._runas.pw_gid)
        self.socket_dir = str(self.tmpdir)
        self.description = f"local PostgreSQL in {self.tmpdir}"

    def _popen_kwargs(self) -> dict[str, Any]:
        if self._runas is None:
            return {}
        return {"user": self._runas.pw_uid, "group": self._runas.pw_gid, "extra_groups": []}

    def _initialise(self) -> None:
        command = [
            str(self._bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
        _run_or_unavailable(command, self.tmpdir, self._popen_kwargs())

    def _command(self) -> list[str]:
        return [
            str(self._bindir / "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-k",
            self.socket_dir,
            "-h",
            "127.0.0.1",
            *_POSTGRES_OPTIONS,
        ]

    def _ping(self) -> None:
        import psycopg

        with psycopg.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname="postgres", connect_timeout=1
        ):
            pass

    def _base_url(self) -> URL:
        return URL.create("postgresql+psycopg", username="postgres", host="127.0.0.1", port=self.port)


def mariadb_server() -> Server:
    """A started MariaDB, the first one README's order allows; the caller must close() it."""
    if url := os.environ.get("NCAUTH_TEST_DATABASE_URL"):
        return _external(url, None, "NCAUTH_TEST_DATABASE_URL")
    tried = ["NCAUTH_TEST_DATABASE_URL is not set"]
    if problem := _docker_problem():
        tried.append(f"Docker: {problem}")
    else:
        try:
            return _mariadb_container()
        except Exception as exc:  # pull, registry or start failure: fall through
            tried.append(f"testcontainers {MARIADB_IMAGE}: {exc.__class__.__name__}: {exc}")
    try:
        return _started(LocalMariaDB())
    except DatabaseUnavailable as exc:
        tried.append(f"local mariadbd: {exc}")
    raise DatabaseUnavailable("no MariaDB for the tests; tried: " + "; ".join(tried))


def postgres_server() -> Server:
    """A started PostgreSQL: NCAUTH_TEST_POSTGRES_URL, else a local one; the caller must close() it."""
    if url := os.environ.get("NCAUTH_TEST_POSTGRES_URL"):
        return _external(url, "postgres", "NCAUTH_TEST_POSTGRES_URL")
    try:
        return _started(LocalPostgres())
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(
            f"no PostgreSQL for the tests; tried: NCAUTH_TEST_POSTGRES_URL is not set; local PostgreSQL: {exc}"
        ) from exc


def _render(base: URL, database: str | None, user: str | None, password: str | None) -> str:
    if user is None:
        user = base.username
        password = base.password if password is None else password
    # URL.create, not URL.set: set() treats None as "keep", and the admin URL needs no database.
    url = URL.create(base.drivername, user, password or None, base.host, base.port, database, base.query)
    return url.render_as_string(hide_password=False)


def _external(url: str, admin_database: str | None, variable: str) -> ExternalServer:
    """An explicitly given server that does not answer is an error, not a reason to use another."""
    server = ExternalServer(url, admin_database)
    try:
        server.execute("SELECT 1")
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"{variable}: {server.description} does not answer: {exc}") from exc
    return server


def _docker_problem() -> str | None:
    """Why Docker cannot be used, or None; a docker client library is not an engine."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:
        return f"no Docker engine answers ({exc.__class__.__name__}: {exc})"
    return None


def _mariadb_container() -> ContainerServer:
    try:
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:  # testcontainers <= 4.14
        from testcontainers.mysql import MySqlContainer
    container = MySqlContainer(
        MARIADB_IMAGE, dialect="pymysql", username="root", password=_CONTAINER_ROOT_PASSWORD
    )
    try:
        container.start()
    except BaseException:
        with contextlib.suppress(Exception):
            container.stop()
        raise
    return ContainerServer(container)


def _started(server: _LocalServer) -> _LocalServer:
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def _find_binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise DatabaseUnavailable(f"{name} not found in PATH, /usr/sbin or /usr/bin")
    return found


def _postgres_bindir() -> Path:
    """Debian keeps the server binaries out of PATH; prefer its newest version, then PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name), reverse=True
    )
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise DatabaseUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _unprivileged_user() -> pwd.struct_passwd:
    """PostgreSQL refuses to run as root."""
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise DatabaseUnavailable("running as root and neither user postgres nor nobody exists")


def _run_or_unavailable(command: list[str], cwd: Path, kwargs: dict[str, Any]) -> None:
    result = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, **kwargs)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        tail = "\n".join(output.splitlines()[-25:])
        raise DatabaseUnavailable(f"{Path(command[0]).name} failed with {result.returncode}:\n{tail}")


def _free_port() -> int:
    """A port free right now; the caller retries if someone takes it before the server binds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and anything it forked (PostgreSQL backends); the group outlives its leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


def _reap(handle: _Handle, tmpdir: Path) -> None:
    """Finalizer: runs on close(), garbage collection or interpreter exit, whichever comes first."""
    if handle.popen is not None:
        _kill_group(handle.popen)
    shutil.rmtree(tmpdir, ignore_errors=True)
