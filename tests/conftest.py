"""Fixtures: real databases holding Nextcloud's tables, and ncauth configs for them.

Databases come in DESIGN §6 order (see dbservers.py). Without one, a test is skipped
locally but fails where ``CI`` or ``NCAUTH_REQUIRE_DB`` is set: CI must never pass
by skipping the real-database tests.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import dbservers
import ncschema
import population
import pytest
import sqlalchemy as sa

REQUIRE_REAL = bool(os.environ.get("CI") or os.environ.get("NCAUTH_REQUIRE_DB"))
_counter = itertools.count()


# --- no secret in any output ---------------------------------------------------------
# Every test's captured stdout/stderr/log, and the output of every program the tests
# run (recorded through record_output), is searched for the suite's passwords, app
# tokens and database secrets; a hit fails the test that produced it.

_recorded: list[str] = []
_runtime_secrets: set[str] = set()


def register_secret(secret: str) -> str:
    """Add a secret made at run time (a database password) to the leak check."""
    _runtime_secrets.add(secret)
    return secret


def record_output(*texts: str) -> None:
    """Hand the output of a subprocess (checkpassword, ncauth, Dovecot's log) to the leak check."""
    _recorded.extend(texts)


def leaked_secrets(texts: list[str]) -> list[str]:
    """The secrets of population.SECRETS that occur in *texts*, shortened for the report."""
    return [
        s[:3] + "…" for s in sorted({*population.SECRETS, *_runtime_secrets}) if any(s in t for t in texts)
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    texts = [content for _, content in report.sections] + _recorded
    _recorded.clear()
    leaked = leaked_secrets(texts)
    if leaked and report.passed:
        report.outcome = "failed"
        report.longrepr = f"secret(s) found in the output of this test: {', '.join(leaked)}"


def unavailable(reason: str) -> None:
    """Skip, or fail when real components are required (CI)."""
    if REQUIRE_REAL:
        pytest.fail(f"{reason} (CI/NCAUTH_REQUIRE_DB is set: real components are required)")
    pytest.skip(reason)


def _server(start, kind: str) -> Iterator[dbservers.Server]:
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


class NextcloudDB:
    """One database with Nextcloud's tables (under *prefix*) and the standard users."""

    def __init__(self, url: str, prefix: str, directory: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.directory = directory
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.config_path: Path | None = None
        ncschema.create_schema(self.engine, prefix)

    def populate(self) -> NextcloudDB:
        with self.engine.begin() as conn:
            population.populate(conn, self.prefix)
        return self

    def write_config(self, text: str = "", *, name: str = "ncauth.toml", mode: int = 0o600) -> Path:
        """An ncauth config for this database; *text* adds sections after [nextcloud]."""
        path = self.directory / name
        path.write_text(population.config_text(self.url, self.prefix) + text)
        path.chmod(mode)
        return path

    def close(self) -> None:
        self.engine.dispose()


def _database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of *kind*: a file for SQLite, a new database on the server otherwise."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'nextcloud.db'}"
    server = request.getfixturevalue("mariadb" if kind == "mariadb" else "postgres")
    return server.create_database(f"nc_{os.getpid()}_{next(_counter)}")


@pytest.fixture(scope="session", params=["sqlite", "mariadb", "postgresql"])
def standard_nextcloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NextcloudDB]:
    """The standard population, shared read-only by the case-table tests of a backend,
    with the standard ncauth config written beside it."""
    tmp = tmp_path_factory.mktemp(f"nc-{request.param}")
    db = NextcloudDB(_database_url(request.param, request, tmp), "oc_", tmp).populate()
    db.config_path = db.write_config(population.STANDARD_CONFIG)
    yield db
    db.close()


@pytest.fixture
def nextcloud_sqlite(tmp_path: Path) -> Iterator[NextcloudDB]:
    db = NextcloudDB(f"sqlite:///{tmp_path / 'nextcloud.db'}", "oc_", tmp_path).populate()
    yield db
    db.close()
