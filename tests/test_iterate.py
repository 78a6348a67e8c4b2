"""User iteration in Lua mode: ``doveadm user '*'`` and ``doveadm -A`` on a real Dovecot
2.3 and 2.4 list exactly the accounts ``Authenticator.accounts()`` gives for the same
config (``auth_userdb_iterate`` in ncauth.lua, the daemon's USERS), ``[accounts] groups``
narrows them, and a database outage fails the iteration instead of listing nobody.

Dovecot's contract (src/auth/db-lua.c, ``auth_lua_call_userdb_iterate_init``): the
function's table values are the names; a Lua error or a non-table fails the iteration.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dovecot_e2e, population
from support.daemon import Daemon, accounts
from support.dovecot24 import dovecot24_available
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB
from support.require import unavailable

from ncauth import client
from ncauth.errors import TemporaryFailure

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

D = population.DOMAIN
#: the standard population's enabled accounts in the served domain (tests/test_accounts.py)
EXPECTED = {f"{u.lower()}@{D}" for u in population.USERS if "@" not in u and u != "dave"}


@pytest.fixture(scope="module")
def iterate_db(mariadb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NextcloudDB]:
    db = NextcloudDB(mariadb.create_database("nc_iterate"), "oc_", tmp_path_factory.mktemp("it")).populate()
    yield db
    db.close()


@pytest.fixture(scope="module", params=["2.3", "2.4"], ids=["lua+daemon-2.3", "lua+daemon-2.4"])
def lua_dovecot(
    request: pytest.FixtureRequest, mariadb, iterate_db: NextcloudDB, dovecot_venv: Path
) -> Iterator[tuple[dovecot_e2e.E2E, Daemon]]:
    if request.param == "2.4" and (reason := dovecot24_available()):
        unavailable(f"no Dovecot 2.4 chroot: {reason}")
    d, server = dovecot_e2e.start(
        "lua", request.param, True, mariadb, iterate_db.url, iterate_db.prefix, dovecot_venv
    )
    assert server is not None
    try:
        yield d, server
    finally:
        d.stop()
        record_output(d.log_text())
        try:
            assert server.stop() == 0
        finally:
            shutil.rmtree(d.root, ignore_errors=True)


def _iterate(dovecot: dovecot_e2e.E2E) -> tuple[int, list[str], str]:
    """``doveadm user '*'``: exit code, the names listed, the whole output."""
    code, out = dovecot.user_lookup("*", timeout=60)
    return code, [line for line in out.splitlines() if line and " " not in line], out


def test_doveadm_user_star_lists_the_accounts(lua_dovecot) -> None:
    dovecot, server = lua_dovecot
    code, names, out = _iterate(dovecot)
    assert code == 0, out
    assert sorted(names) == accounts(server.config) and set(names) == EXPECTED, out
    assert client.users(str(server.socket)) == sorted(EXPECTED)


def test_doveadm_all_users_runs_for_each(lua_dovecot) -> None:
    dovecot, _ = lua_dovecot
    code, out = dovecot.doveadm("-f", "tab", "mailbox", "list", "-A", timeout=120)
    assert code == 0, out
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert sorted(row[0] for row in rows) == sorted(EXPECTED), out  # each user once
    assert all(row[1] == "INBOX" for row in rows), out


def _reconfigure(server: Daemon, text: str) -> None:
    server.config.write_text(text)
    reloads = server.log().count("configuration reloaded")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log("configuration reloaded", reloads + 1)


def test_groups_narrow_the_list(lua_dovecot) -> None:
    dovecot, server = lua_dovecot
    original = server.config.read_text()
    assert "[accounts]\n" in original
    _reconfigure(server, original.replace("[accounts]\n", "[accounts]\ngroups = ['admin']\n", 1))
    try:
        code, names, out = _iterate(dovecot)
        assert code == 0, out
        assert names == accounts(server.config) == [f"gus@{D}"], out
    finally:
        _reconfigure(server, original)
    assert set(_iterate(dovecot)[1]) == EXPECTED


def test_database_down_fails_the_iteration(lua_dovecot, mariadb) -> None:
    """An outage is an error doveadm reports, never an empty list that reads "no users"."""
    dovecot, server = lua_dovecot
    mark = dovecot.log_mark()
    mariadb.stop()
    try:
        code, names, out = _iterate(dovecot)
        # EX_TEMPFAIL and "Fatal: user listing failed" on 2.3.19 and 2.4
        assert code == 75 and not names and "listing failed" in out, out
        code, out = dovecot.doveadm("mailbox", "list", "-A", timeout=120)
        assert code != 0, out
        with pytest.raises(TemporaryFailure):
            client.users(str(server.socket))
    finally:
        mariadb.start()
    # "auth_userdb_iterate failed: lua_pcall(...) failed: ncauth daemon: temporary failure: ..."
    log = dovecot.log_since(mark)
    assert "auth_userdb_iterate failed: " in log and "ncauth daemon: temporary failure: database" in log, log
    code, names, out = _iterate(dovecot)
    assert code == 0 and set(names) == EXPECTED, out
