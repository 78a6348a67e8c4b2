"""Several database URLs (primary and replicas, Galera nodes): a node that dies is
skipped, logins go on against the next, and the dead node is tried again later."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from support import dbservers, population
from support.daemon import Daemon, wait_for
from support.nextcloud import NextcloudDB
from support.population import A, P
from support.require import unavailable


@pytest.fixture
def two_nodes(tmp_path: Path):
    servers = []
    try:
        for _ in range(2):
            try:
                servers.append(dbservers._started(dbservers.LocalMariaDB()))
            except dbservers.DatabaseUnavailable as exc:
                unavailable(f"no local mariadbd for the failover test: {exc}")
        dbs = [NextcloudDB(s.create_database("nc_failover"), "oc_", tmp_path).populate() for s in servers]
        yield servers, dbs
        for db in dbs:
            db.close()
    finally:
        for s in servers:
            s.close()


def _daemon_connected(server: dbservers.Server, db: NextcloudDB) -> bool:
    """Does *server* hold a connection to *db*'s database besides this probe (the daemon's
    pool: it connects to a node when it sends it queries)?"""
    rows = server.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
        (make_url(db.url).database,),
    )
    return rows[0][0] > 0


def test_node_killed_during_a_login_storm(two_nodes, tmp_path: Path) -> None:
    """200 logins while the first node is killed: every verdict is right, at most the
    requests in flight temp-fail, none is refused; the node is used again once back."""
    servers, dbs = two_nodes
    urls = ", ".join(f'"{db.url}"' for db in dbs)
    sock = tmp_path / "auth.sock"
    config = tmp_path / "ncauth.toml"
    config.write_text(
        population.config_text(dbs[0].url, "oc_").replace(
            f'database_url = "{dbs[0].url}"', f"database_url = [{urls}]"
        )
        + "failover_retry = 2\n"
        + population.STANDARD_CONFIG
        + f'\n[daemon]\nsocket = "{sock}"\nthrottle = false\nworkers = 2\n'
    )
    config.chmod(0o600)
    d = Daemon(config, sock)
    try:
        jobs = [(A, P, "OK") if i % 3 else (A, f"wrong-{i}", "FAIL") for i in range(200)]
        answered: list[str] = []
        killed_after: list[int] = []

        def ask(job: tuple[str, str, str]) -> str:
            answered.append(verdict := d.ask("AUTH", job[0], job[1]).verdict)
            return verdict

        def kill_mid_storm() -> None:
            wait_for(lambda: len(answered) >= 20, timeout=60)
            servers[0].kill()
            killed_after.append(len(answered))

        killer = threading.Thread(target=kill_mid_storm)
        killer.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(ask, jobs))
        killer.join()
        assert killed_after and killed_after[0] < 150, killed_after  # the storm went on past the kill
        print(
            f"failover: {len(answers)} logins, {answers.count('OK')} OK, {answers.count('FAIL')} FAIL, "
            f"{answers.count('TEMPFAIL')} TEMPFAIL, db_reconnects={d.stats()['db_reconnects']}"
        )
        wrong = [(j, a) for j, a in zip(jobs, answers, strict=True) if a not in (j[2], "TEMPFAIL")]
        assert not wrong, wrong[:5]
        assert answers.count("TEMPFAIL") <= 8, answers.count("TEMPFAIL")  # at most the in-flight ones
        assert not servers[0].is_running()
        assert int(d.stats()["db_reconnects"]) >= 1

        # the first node comes back; after failover_retry it serves again (the daemon
        # connects to it), so losing the second one costs nothing
        servers[0].start()
        wait_for(
            lambda: d.ask("AUTH", A, P).verdict == "OK" and _daemon_connected(servers[0], dbs[0]), timeout=30
        )
        servers[1].stop()
        assert [d.ask("AUTH", A, P).verdict for _ in range(5)] == ["OK"] * 5
    finally:
        assert d.stop() == 0
