"""A real Dovecot logs the standard population in through every mode ncauth generates:
checkpassword and SQL on Dovecot 2.3, SQL on Dovecot 2.4 (Debian 13, in a chroot).

For each mode the snippet comes from ``ncauth dovecot-config`` of a virtualenv made from
Debian's python (user dovecot must reach it), is included as-is, and every case of the
population is tried through IMAP LOGIN, ``doveadm auth test`` and the Postfix SASL
listener; lookups go through ``doveadm auth lookup`` and ``doveadm user``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import dovecot_e2e, population
from support.dovecot24 import dovecot24_available
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB
from support.population import CASES, Case
from support.require import unavailable

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

#: What SQL mode cannot do (README: "Choose your Dovecot path"): these logins are refused there.
SQL_MODE_REFUSES = {
    "legacy-sha1",
    "legacy-bcrypt-salted",
    "legacy-bcrypt-unsalted",
    "2fa-trusted-network",
    "2fa-trusted-network-v4-mapped",
    "2fa-app-password",
    "app-password",
    "app-password-future-expiry",
    "app-password-login-name-address",
    "app-password-no-secret-fallback",
    "app-password-session-token",
    "app-password-login-name-email",
    "app-password-stores-no-password",
    "urlencoded-password",
}


@pytest.fixture(scope="module")
def e2e_db(mariadb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NextcloudDB]:
    db = NextcloudDB(mariadb.create_database("nc_e2e"), "oc_", tmp_path_factory.mktemp("e2e")).populate()
    yield db
    db.close()


#: mode, Dovecot version, with the daemon
MATRIX = [
    ("checkpassword", "2.3", False),
    ("checkpassword", "2.3", True),
    ("sql", "2.3", False),
    ("sql", "2.4", False),
    ("lua", "2.3", True),
    ("lua", "2.4", True),
]


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{m}{'+daemon' if d else ''}-{v}" for m, v, d in MATRIX])
def dovecot(
    request: pytest.FixtureRequest, mariadb, e2e_db: NextcloudDB, dovecot_venv: Path
) -> Iterator[dovecot_e2e.E2E]:
    mode, version, with_daemon = request.param
    if version == "2.4" and (reason := dovecot24_available()):
        unavailable(f"no Dovecot 2.4 chroot: {reason}")
    d, server = dovecot_e2e.start(
        mode, version, with_daemon, mariadb, e2e_db.url, e2e_db.prefix, dovecot_venv
    )
    try:
        yield d
    finally:
        d.stop()
        log = d.log_text()
        record_output(log)
        try:
            if server is not None:
                stats = server.stats()
                assert server.stop() == 0
                assert "via=daemon" in server.log() and "via=checkpassword" not in log
                if mode == "lua" and int(stats["requests"]) >= 40:  # enough logins to tell
                    # one connection per auth-worker, kept across logins
                    assert int(stats["connections"]) * 4 < int(stats["requests"]), stats
        finally:
            shutil.rmtree(d.root, ignore_errors=True)


def _expected_ok(mode: str, case: Case) -> bool:
    return case.outcome == "ok" and not (mode == "sql" and case.id in SQL_MODE_REFUSES)


#: How a case reaches Dovecot: an IMAP LOGIN, `doveadm auth test`, or SASL PLAIN on the auth
#: socket (the way Postfix asks). The passdb's verdict is the same whichever asks, so each
#: (mode, case) takes one path, rotating, and every pair of mode, case and path still meets:
#: each case goes through every path (in two modes each), each mode through every path. The
#: core cases below take all three everywhere. A third of the logins, the same coverage.
PATHS = ("imap", "auth_test", "sasl")
CORE = {"argon2id", "wrong-password", "unknown-user", "app-password", "2fa-login-password"}


def _paths(mode_index: int, case_index: int, case: Case) -> set[str]:
    if case.id in CORE:
        return set(PATHS) - ({"imap"} if case.remote_ip else set())
    path = PATHS[(mode_index + case_index) % 3]
    if path == "imap" and case.remote_ip:  # IMAP connects from 127.0.0.1: no client address to set
        path = PATHS[(mode_index + case_index + 1) % 3]
    return {path}


def test_paths_cover_every_pair() -> None:
    """The rotation above leaves no (mode, path) and no (case, path) pair out."""
    seen = {(m, i, p) for m in range(len(MATRIX)) for i, c in enumerate(CASES) for p in _paths(m, i, c)}
    assert {(m, p) for m, _, p in seen} == {(m, p) for m in range(len(MATRIX)) for p in PATHS}
    for i, c in enumerate(CASES):
        assert {p for _, j, p in seen if j == i} == set(PATHS) - ({"imap"} if c.remote_ip else set()), c.id


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_login(dovecot, case: Case, request: pytest.FixtureRequest) -> None:
    ok = _expected_ok(dovecot.mode, case)
    mark = dovecot.log_mark()
    paths = _paths(MATRIX.index(request.node.callspec.params["dovecot"]), CASES.index(case), case)
    if "imap" in paths:
        # LOGIN cannot carry a non-ASCII user name; clients use AUTHENTICATE PLAIN for that.
        status, text = dovecot.imap_login(
            case.login, case.password, mech="login" if case.login.isascii() else "plain"
        )
        if ok:
            assert status == "OK", text
        elif len(case.password) > 1000:  # imap-login itself drops the connection: "Input buffer full"
            assert status == "BYE" and "[UNAVAILABLE]" not in text, text
        else:
            assert status == "NO" and "[AUTHENTICATIONFAILED]" in text, text
    rip = case.remote_ip or "198.51.100.1"
    if "auth_test" in paths:
        code, out = dovecot.auth_test(case.login, case.password, rip=rip, extra=["no-penalty"])
        assert code == (0 if ok else 77), out + dovecot.log_since(mark)
        assert "temp_fail" not in out, out + dovecot.log_since(mark)
        if ok:
            assert f"user={case.user}" in out
    if "sasl" in paths:
        verdict, fields = dovecot.sasl_plain(case.login, case.password, rip=rip)
        assert verdict == ("OK" if ok else "FAIL"), fields
        assert "code" not in fields
        if ok:
            assert fields["user"] == case.user
    record_output(dovecot.log_since(mark))


LOOKUPS = [
    # login, auth lookup (checkpassword and Lua, sql), doveadm user (checkpassword and Lua, sql)
    (population.A, (0, 0), (0, 0)),
    ("ALICE@example.org", (0, 0), (0, 0)),
    ("carol@example.org", (67, 67), (67, 67)),
    ("alice@other.tld", (67, 67), (67, 67)),
    ("dave@example.org", (0, 67), (0, 0)),  # disabled: delivery goes on, SQL mode refuses the passdb
    ("tina@example.org", (0, 67), (0, 0)),  # two-factor: SQL mode leaves the user out of the passdb
]


@pytest.mark.parametrize(("login", "auth_lookup", "user_lookup"), LOOKUPS, ids=[x[0] for x in LOOKUPS])
def test_lookups(dovecot, login: str, auth_lookup: tuple[int, int], user_lookup: tuple[int, int]) -> None:
    index = 1 if dovecot.mode == "sql" else 0
    code, out = dovecot.auth_lookup(login)
    assert code == auth_lookup[index], out
    code, out = dovecot.user_lookup(login)
    assert code == user_lookup[index], out
    if code == 0:
        local, _, domain = login.lower().partition("@")
        fields = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        assert fields["home"] == f"{dovecot.root}/mail/{domain}/{local}", out
        assert fields["uid"] in ("65534", "nobody"), out


def _while_down(dovecot: dovecot_e2e.E2E) -> None:
    """Every way in answers "temporary failure", never AUTHENTICATIONFAILED."""
    # Dovecot's own SQL pool holds a query that was cut off for up to 60 s
    # (SQL_QUERY_TIMEOUT_SECS) before it gives up; checkpassword answers at once.
    started = time.monotonic()
    status, text = dovecot.imap_login(population.A, population.P, timeout=90)
    assert status == "NO" and "[UNAVAILABLE]" in text, text
    if dovecot.mode != "sql":
        assert time.monotonic() - started < 10
    code, out = dovecot.auth_test(population.A, population.P, extra=["no-penalty"])
    assert code != 0 and "temp_fail" in out, out
    verdict, fields = dovecot.sasl_plain(population.A, population.P)
    assert verdict == "FAIL" and fields.get("code") == "temp_fail", fields


def _recovers(dovecot: dovecot_e2e.E2E) -> None:
    """Back without restarting anything. Dovecot's SQL pool reconnects on its own back-off
    (1, 5, 25, 125 s), so SQL mode may take a while; checkpassword connects afresh."""
    started = time.monotonic()
    deadline = started + (10 if dovecot.mode != "sql" else 180)
    while (result := dovecot.imap_login(population.A, population.P))[
        0
    ] != "OK" and time.monotonic() < deadline:
        assert "[UNAVAILABLE]" in result[1], result
        time.sleep(1)
    assert result[0] == "OK", f"not recovered after {time.monotonic() - started:.0f} s: {result}"


def _outage(dovecots: list[dovecot_e2e.E2E], mariadb) -> None:
    """Stop the database under running Dovecots, check each (side by side), start it again.
    Each first logs in once, so that its connections are live when the database goes away
    (a fresh SQL pool fails at once; a cut-off query is what waits)."""
    for d in dovecots:
        assert d.imap_login(population.A, population.P)[0] == "OK"
        d.auth_cache_flush()
    with ThreadPoolExecutor(len(dovecots)) as pool:
        mariadb.stop()
        try:
            list(pool.map(_while_down, dovecots))
        finally:
            mariadb.start()
        list(pool.map(_recovers, dovecots))


#: the modes whose outage answer comes at once; SQL mode's waits out Dovecot's pool (below)
_PROMPT = [m for m in MATRIX if m[0] != "sql"]


@pytest.mark.parametrize(
    "dovecot", _PROMPT, indirect=True, ids=[f"{m}{'+daemon' if d else ''}-{v}" for m, v, d in _PROMPT]
)
def test_database_down_is_temporary(dovecot, mariadb) -> None:
    """Never AUTHENTICATIONFAILED for an outage: mail clients would drop the saved password."""
    _outage([dovecot], mariadb)


def test_database_down_is_temporary_in_sql_mode(mariadb, e2e_db: NextcloudDB, dovecot_venv: Path) -> None:
    """The same for Dovecot's own SQL passdb, 2.3 and 2.4 side by side: each holds the
    cut-off query for its 60 s, so they wait it out once, together."""
    if reason := dovecot24_available():
        unavailable(f"no Dovecot 2.4 chroot: {reason}")
    dovecots = []
    try:
        for version in ("2.3", "2.4"):
            d, _ = dovecot_e2e.start("sql", version, False, mariadb, e2e_db.url, e2e_db.prefix, dovecot_venv)
            dovecots.append(d)
        _outage(dovecots, mariadb)
    finally:
        for d in dovecots:
            d.stop()
            record_output(d.log_text())
            shutil.rmtree(d.root, ignore_errors=True)
