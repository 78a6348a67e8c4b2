"""A real Dovecot logs the standard population in through every mode ncauth generates:
checkpassword and SQL on Dovecot 2.3, SQL on Dovecot 2.4 (Debian 13, in a chroot).

For each mode the snippet comes from ``ncauth dovecot-config`` of a virtualenv made from
Debian's python (user dovecot must reach it), is included as-is, and every case of the
population is tried through IMAP LOGIN, ``doveadm auth test`` and the Postfix SASL
listener; lookups go through ``doveadm auth lookup`` and ``doveadm user``.
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import population
import pytest
from conftest import NextcloudDB, record_output, register_secret, unavailable
from dovecot24 import Dovecot24, dovecot24_available
from dovecot_harness import Dovecot, DovecotBase, dovecot_available, dovecot_tmpdir, make_dovecot_venv
from population import CASES, Case
from test_daemon import Daemon

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent

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


class E2E:
    """Mixin: SASL goes to the Postfix listener of the generated snippet, and the test
    knows which mode it runs."""

    postfix_socket: Path
    mode: str

    @property
    def auth_smtp_socket(self) -> Path:
        return self.postfix_socket


class E2EDovecot23(E2E, Dovecot):
    pass


class E2EDovecot24(E2E, Dovecot24):
    pass


@pytest.fixture(scope="session")
def dovecot_venv() -> Path:
    reason = dovecot_available()
    if reason:
        unavailable(f"no usable Dovecot 2.3: {reason}")
    return make_dovecot_venv(ROOT)


@pytest.fixture(scope="module")
def e2e_db(mariadb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NextcloudDB]:
    db = NextcloudDB(mariadb.create_database("nc_e2e"), "oc_", tmp_path_factory.mktemp("e2e")).populate()
    yield db
    db.close()


def _ncauth(venv: Path, *args: str) -> str:
    proc = subprocess.run([str(venv / "bin" / "ncauth"), *args], capture_output=True, text=True, timeout=60)
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _db_user(mariadb, db: NextcloudDB, venv: Path, config: Path, which: str, name: str) -> str:
    """Create the least-privilege user *name* that ``ncauth sql`` prints for *which* and
    return a URL for it: the tests then run with exactly the generated grants."""
    password = register_secret("e2e-" + secrets.token_hex(12))
    mariadb.execute(f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")
    sql = _ncauth(venv, "sql", "--config", str(config), "--host", "127.0.0.1", f"--{which}-user", name)
    section = sql.split(f"({name}):\n", 1)[1].split("\n\n", 1)[0]
    code = "\n".join(
        line.split("--", 1)[0] for line in section.replace("'CHANGE-ME'", f"'{password}'").splitlines()
    )
    statements = [s.strip() for s in code.split(";") if s.strip()]
    assert len(statements) == len(section.splitlines())  # one statement a line, none lost
    for statement in statements:
        mariadb.execute(statement)
    host, port = mariadb.url("x").split("@", 1)[1].split("/", 1)[0].split(":")
    return f"mysql+pymysql://{name}:{password}@{host}:{port}/{db.url.rsplit('/', 1)[1]}"


def _start(
    mode: str, version: str, daemon: bool, mariadb, db: NextcloudDB, venv: Path
) -> tuple[DovecotBase, Daemon | None]:
    root = dovecot_tmpdir()
    config = root / "ncauth.toml"
    userdb = f'\n[userdb]\nuid = "nobody"\ngid = "nogroup"\nhome = "{root}/mail/{{domain}}/{{local}}"\n'
    accounts = population.STANDARD_CONFIG.split("[userdb]")[0]
    sock = root / "ncauth.sock"
    # the case table fails on purpose from one address: no failure throttling here
    daemon_section = (
        f'\n[daemon]\nsocket = "{sock}"\nsocket_group = "dovecot"\nthrottle = false\n' if daemon else ""
    )
    config.write_text(population.config_text(db.url, db.prefix) + accounts + userdb)
    config.chmod(0o600)
    which = "dovecot" if mode == "sql" else "ncauth"
    url = _db_user(mariadb, db, venv, config, which, f"e2e_{mode}_{version.replace('.', '')}")
    config.write_text(population.config_text(url, db.prefix) + accounts + userdb + daemon_section)
    os.chown(config, 0, grp.getgrnam("dovecot").gr_gid)
    config.chmod(0o640)
    server = (
        Daemon(config, sock, argv=[str(venv / "bin" / "ncauth"), "serve", "--config", str(config)])
        if daemon
        else None
    )
    snippet = root / "ncauth.conf.ext"
    _ncauth(
        venv,
        "dovecot-config",
        "--config",
        str(config),
        "--mode",
        mode,
        "--dovecot",
        version,
        "--output",
        str(snippet),
        "--postfix-socket",
        f"{root}/postfix-auth",
        "--postfix-user",
        "root",
        "--postfix-group",
        "root",
    )
    cls = E2EDovecot23 if version == "2.3" else E2EDovecot24
    dovecot = cls(root, snippet.read_text())
    dovecot.postfix_socket = root / "postfix-auth"
    dovecot.mode = mode
    return dovecot.start(), server


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
) -> Iterator[E2E]:
    mode, version, with_daemon = request.param
    if version == "2.4" and (reason := dovecot24_available()):
        unavailable(f"no Dovecot 2.4 chroot: {reason}")
    d, server = _start(mode, version, with_daemon, mariadb, e2e_db, dovecot_venv)
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
                if mode == "lua":  # one connection per auth-worker, kept across logins
                    assert int(stats["connections"]) * 4 < int(stats["requests"]), stats
        finally:
            shutil.rmtree(d.root, ignore_errors=True)


def _expected_ok(mode: str, case: Case) -> bool:
    return case.outcome == "ok" and not (mode == "sql" and case.id in SQL_MODE_REFUSES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_login(dovecot, case: Case) -> None:
    ok = _expected_ok(dovecot.mode, case)
    mark = dovecot.log_mark()
    if not case.remote_ip:  # IMAP connects from 127.0.0.1, which is not a trusted network here
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
    code, out = dovecot.auth_test(case.login, case.password, rip=rip, extra=["no-penalty"])
    assert code == (0 if ok else 77), out
    assert "temp_fail" not in out
    if ok:
        assert f"user={case.user}" in out
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


def test_database_down_is_temporary(dovecot, mariadb) -> None:
    """Never AUTHENTICATIONFAILED for an outage: mail clients would drop the saved password."""
    dovecot.auth_cache_flush()
    mariadb.stop()
    try:
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
    finally:
        mariadb.start()
    # Back without restarting anything. Dovecot's SQL pool reconnects on its own back-off
    # (1, 5, 25, 125 s), so SQL mode may take a while; checkpassword connects afresh.
    started = time.monotonic()
    deadline = started + (10 if dovecot.mode != "sql" else 180)
    while (result := dovecot.imap_login(population.A, population.P))[
        0
    ] != "OK" and time.monotonic() < deadline:
        assert "[UNAVAILABLE]" in result[1], result
        time.sleep(1)
    assert result[0] == "OK", f"not recovered after {time.monotonic() - started:.0f} s: {result}"
