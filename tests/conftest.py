"""Fixtures: real databases holding Nextcloud's tables, ncauth configs for them, and
daemons serving them. The helpers behind them are in the ``support`` package.

Databases come in the order README's "Run the tests" gives (see support/dbservers.py). Without one, a test is
skipped locally but fails where ``CI`` or ``NCAUTH_REQUIRE_DB`` is set: CI must never
pass by skipping the real-database tests.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import dbservers, population
from support.daemon import Daemon, daemon_config
from support.dovecot_harness import dovecot_available, make_dovecot_venv
from support.nextcloud import NextcloudDB, database_url
from support.require import unavailable

pytest_plugins = ["support.leakcheck"]
_PREBUILDS: list[threading.Thread] = []
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the cached Debian chroots at once, in the background, when the run has
    tests that need them and the cache is cold: debootstrap mostly waits on the mirror and
    the disk, so it overlaps the CPU-bound tests that come first instead of stalling the run
    at its first chroot test (a cold CI machine saves minutes). The tests still ask for the
    chroots themselves and wait on the build's flock; a failed build is theirs to report."""
    needs = {"test_deb.py", "test_dovecot.py", "test_iterate.py", "test_quota_dovecot.py"}
    if os.geteuid() != 0 or not any(item.path.name in needs for item in session.items):
        return
    from support.debchroot import BOOKWORM_PACKAGES, chroot_unavailable, debian_root
    from support.dovecot24 import trixie_root

    if chroot_unavailable():
        return

    def build(make: Callable[[], Path]) -> None:
        try:
            make()
        except Exception:  # noqa: S110 - the test that needs the chroot builds it again and reports why
            pass

    for make in (trixie_root, lambda: debian_root("bookworm", BOOKWORM_PACKAGES)):
        thread = threading.Thread(target=build, args=(make,), daemon=True, name="chroot-prebuild")
        thread.start()
        _PREBUILDS.append(thread)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A build the run started is finished, never left half-done for the next run to redo."""
    for thread in _PREBUILDS:
        thread.join()


def _server(start: Callable[[], dbservers.Server], kind: str) -> Iterator[dbservers.Server]:
    try:
        server = start()
    except dbservers.DatabaseUnavailable as exc:
        unavailable(f"no {kind}: {exc}")
    with server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[dbservers.Server]:
    yield from _server(dbservers.mariadb_server, "MariaDB")


@pytest.fixture(scope="session")
def postgres() -> Iterator[dbservers.Server]:
    yield from _server(dbservers.postgres_server, "PostgreSQL")


@pytest.fixture(scope="session", params=["sqlite", "mariadb", "postgresql"])
def standard_nextcloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NextcloudDB]:
    """The standard population, shared read-only by the case-table tests of a backend,
    with the standard ncauth config written beside it."""
    tmp = tmp_path_factory.mktemp(f"nc-{request.param}")
    db = NextcloudDB(database_url(request.param, request, tmp), "oc_", tmp).populate()
    db.config_path = db.write_config(population.STANDARD_CONFIG)
    yield db
    db.close()


@pytest.fixture
def nextcloud_sqlite(tmp_path: Path) -> Iterator[NextcloudDB]:
    """The standard population in a fresh SQLite file: for tests of anything but the
    database (the socket protocol, the process, the relay), which need no server."""
    db = NextcloudDB(f"sqlite:///{tmp_path / 'nextcloud.db'}", "oc_", tmp_path).populate()
    yield db
    db.close()


@pytest.fixture
def db(mariadb: dbservers.Server, tmp_path: Path) -> Iterator[NextcloudDB]:
    """The standard population in a fresh MariaDB database."""
    d = NextcloudDB(
        mariadb.create_database(f"nc_daemon_{os.getpid()}_{time.monotonic_ns()}"), "oc_", tmp_path
    )
    yield d.populate()
    d.close()


def _daemon(db: NextcloudDB, tmp_path: Path) -> Iterator[Daemon]:
    config, sock = daemon_config(db, tmp_path)
    d = Daemon(config, sock)
    yield d
    assert d.stop() == 0


@pytest.fixture
def daemon(db: NextcloudDB, tmp_path: Path) -> Iterator[Daemon]:
    """``ncauth serve`` on ``db`` (MariaDB), throttling off; must exit 0 on SIGTERM."""
    yield from _daemon(db, tmp_path)


@pytest.fixture
def sqlite_daemon(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> Iterator[Daemon]:
    """``ncauth serve`` on ``nextcloud_sqlite``, throttling off; must exit 0 on SIGTERM."""
    yield from _daemon(nextcloud_sqlite, tmp_path)


@pytest.fixture(scope="session")
def dovecot_venv() -> Path:
    """A virtualenv with this checkout installed that user dovecot can run (cached across
    sessions under /var/tmp/ncauth-test-venvs, keyed by the installed sources)."""
    reason = dovecot_available()
    if reason:
        unavailable(f"no usable Dovecot 2.3: {reason}")
    return make_dovecot_venv(ROOT)
