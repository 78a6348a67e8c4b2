"""The installed ``ncauth-checkpassword`` as Dovecot 2.3 runs it: real fd 3 / fd 4 pipes,
no PATH, exit status and reply bytes checked (Dovecot's src/auth/db-checkpassword.c and checkpassword-reply.c)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import population
from support.checkpassword import PROGRAM, REPLY_HELPER, checkpassword, expected_reply, request
from support.nextcloud import NextcloudDB, database_url
from support.population import CASES, A, P


@pytest.fixture(scope="module")
def mariadb_nextcloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cp-mariadb")
    db = NextcloudDB(database_url("mariadb", request, tmp), "oc_", tmp).populate()
    db.config_path = db.write_config(population.STANDARD_CONFIG)
    yield db
    db.close()


FD3_CASES = [c for c in CASES if len(request(c.login, c.password)) <= 512]


@pytest.mark.parametrize("case", FD3_CASES, ids=lambda c: c.id)
def test_case_table_on_mariadb(mariadb_nextcloud, case: population.Case) -> None:
    env = {"TCPREMOTEIP": case.remote_ip} if case.remote_ip else {}
    r = checkpassword(mariadb_nextcloud.config_path, request(case.login, case.password), env)
    if case.outcome == "ok":
        assert (r.code, r.reply) == (0, expected_reply(case.user)), r.stderr
    else:
        assert (r.code, r.reply) == (1, b""), r.stderr
    assert case.reason in r.stderr or (case.outcome == "unknown" and "verdict=unknown" in r.stderr)
    assert len([line for line in r.stderr.splitlines() if "verdict=" in line]) == 1


@pytest.mark.parametrize(
    "case_id",
    [
        "argon2id",
        "wrong-password",
        "disabled",
        "unknown-user",
        "app-password",
        "2fa-login-password",
        "2fa-trusted-network",
        "legacy-sha1",
    ],
)
def test_cases_on_sqlite(nextcloud_sqlite, case_id: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    env = {"TCPREMOTEIP": case.remote_ip} if case.remote_ip else {}
    config = nextcloud_sqlite.write_config(population.STANDARD_CONFIG)
    r = checkpassword(config, request(case.login, case.password), env)
    assert r.code == (0 if case.outcome == "ok" else 1), r.stderr


# --- lookups (AUTHORIZED=1) ------------------------------------------------------


def test_userdb_lookup(mariadb_nextcloud) -> None:
    r = checkpassword(mariadb_nextcloud.config_path, request(A, ""), {"AUTHORIZED": "1"})
    assert (r.code, r.reply) == (2, expected_reply(A))
    r = checkpassword(mariadb_nextcloud.config_path, request("carol@example.org", ""), {"AUTHORIZED": "1"})
    assert (r.code, r.reply) == (3, b"")


def test_passdb_lookup_without_scheme(mariadb_nextcloud) -> None:
    env = {"AUTHORIZED": "1", "CREDENTIALS_LOOKUP": "1", "SCHEME": ""}
    r = checkpassword(mariadb_nextcloud.config_path, request("ALICE@example.org", ""), env)
    assert (r.code, r.reply) == (2, expected_reply(A))


def test_disabled_user_still_exists_for_lookups(mariadb_nextcloud) -> None:
    """Mail delivery (LMTP userdb lookups) goes on for a disabled user; logins don't."""
    r = checkpassword(mariadb_nextcloud.config_path, request("dave@example.org", ""), {"AUTHORIZED": "1"})
    assert r.code == 2


def test_credentials_lookup_for_other_mechanisms_is_tempfail(mariadb_nextcloud) -> None:
    env = {"AUTHORIZED": "1", "CREDENTIALS_LOOKUP": "1", "SCHEME": "CRAM-MD5"}
    r = checkpassword(mariadb_nextcloud.config_path, request(A, ""), env)
    assert (r.code, r.reply) == (111, b"")
    assert "auth_mechanisms = plain login" in r.stderr


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"alice@example.org\0" + P.encode(), 111),  # EOF before three NULs
        (b"alice@example.org" + b"x" * 600, 111),  # 512 bytes and no NUL
        (b"a" * 300 + b"\0" + b"b" * 300 + b"\0\0", 111),  # over 512 bytes in all
        (request(A, P) + request("carol@example.org", "x"), 0),  # a second request glued on is ignored
        (request(A, P) + b"junk", 0),
        (b"", 111),
        (request(b"\xff\xfe@example.org", P), 1),  # login not UTF-8
        (request(A, b"\xff\xfe\xfd"), 1),  # password not UTF-8: just wrong
        (request("", P), 1),
        (request(A, ""), 1),
        (request("", ""), 1),
        (request("alice", P), 1),  # no @, no default_domain
        (request("alice@other.tld", P), 1),
        (request("alice'; DROP TABLE oc_users; --@example.org", P), 1),
        (request("alice@example.org\tuserdb_uid=0", P), 1),  # TAB would forge reply fields
        (request("al\nice@example.org", P), 1),
    ],
)
def test_bad_input(mariadb_nextcloud, data: bytes, code: int) -> None:
    r = checkpassword(mariadb_nextcloud.config_path, data)
    assert r.code == code, r.stderr
    assert r.reply == (expected_reply(A) if code == 0 else b"")
    assert "Traceback" not in r.stderr


def test_does_not_wait_for_eof(mariadb_nextcloud) -> None:
    """A sibling child can hold fd 3's write end: answer once three NULs are in."""
    r = checkpassword(mariadb_nextcloud.config_path, request(A, P), keep_open=True)
    assert (r.code, r.reply) == (0, expected_reply(A))
    assert r.seconds < 5


def test_answers_under_dovecots_256mib_address_space_limit(mariadb_nextcloud) -> None:
    """Dovecot's default_vsz_limit applies to the child: a 64 MiB argon2id must still verify."""
    hash_ = population.HASH[population.USERS["Alice"]]
    assert "m=65536" in hash_
    r = checkpassword(mariadb_nextcloud.config_path, request(A, P), address_space=256 * 1024 * 1024)
    assert (r.code, r.reply) == (0, expected_reply(A)), r.stderr


def test_answers_under_the_limit_on_postgresql_too(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The one-shot store's psycopg (libpq, OpenSSL, asyncio) fits beside the hash as well."""
    from support.checkpassword import request as fd3  # *request* is pytest's here

    db = NextcloudDB(database_url("postgresql", request, tmp_path), "oc_", tmp_path).populate()
    try:
        config = db.write_config(population.STANDARD_CONFIG)
        r = checkpassword(config, fd3(A, P), address_space=256 * 1024 * 1024)
        assert (r.code, r.reply) == (0, expected_reply(A)), r.stderr
        r = checkpassword(config, fd3(A, "wrong"), address_space=256 * 1024 * 1024)
        assert (r.code, r.reply) == (1, b""), r.stderr
    finally:
        db.close()


# --- failures are temporary ----------------------------------------------------------


def _config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "ncauth.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (None, 0o600, "no such file"),
        ("[nextcloud\n", 0o600, "not valid TOML"),
        ('[nextcloud]\ndatabase_url = "sqlite:////x.db"\nsecret = "s"\n', 0o644, "readable by every user"),
        ('[nextcloud]\ndatabase_url = "sqlite:////x.db"\nsekret = "s"\n', 0o600, "unknown key"),
    ],
)
def test_broken_config_is_tempfail(tmp_path: Path, text: str | None, mode: int, message: str) -> None:
    path = tmp_path / "absent.toml" if text is None else _config(tmp_path, text, mode)
    r = checkpassword(path, request(A, P))
    assert (r.code, r.reply) == (111, b"")
    assert message in r.stderr


def test_no_config_argument_uses_default_path_and_tempfails(tmp_path: Path) -> None:
    r = checkpassword("", request(A, P), argv=[str(PROGRAM), REPLY_HELPER])
    assert r.code == 111 and "/etc/ncauth/ncauth.toml" in r.stderr


def test_unreachable_database_is_tempfail_fast(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[nextcloud]\ndatabase_url = "mysql+pymysql://nc:pw@127.0.0.1:1/nextcloud"\n'
        + population.STANDARD_CONFIG,
    )
    r = checkpassword(path, request(A, P))
    assert (r.code, r.reply) == (111, b"")
    assert "verdict=tempfail" in r.stderr and ":***@" not in r.stderr and "pw@" not in r.stderr
    assert r.seconds < 10


def test_wrong_table_prefix_is_tempfail(mariadb_nextcloud, tmp_path: Path) -> None:
    path = _config(
        tmp_path, population.config_text(mariadb_nextcloud.url, "wrong_") + population.STANDARD_CONFIG
    )
    r = checkpassword(path, request(A, P))
    assert r.code == 111, r.stderr


def test_database_stopped_then_restarted(mariadb, tmp_path: Path) -> None:
    """DB down → 111 within seconds (never 1); back up → logins work again."""
    db = NextcloudDB(mariadb.create_database("nc_restart"), "oc_", tmp_path).populate()
    config = db.write_config(population.STANDARD_CONFIG)
    try:
        assert checkpassword(config, request(A, P)).code == 0
        mariadb.stop()
        for data in (request(A, P), request(A, "wrong"), request("carol@example.org", "x")):
            r = checkpassword(config, data)
            assert (r.code, r.reply) == (111, b""), r.stderr
            assert r.seconds < 10
    finally:
        mariadb.start()
    assert checkpassword(config, request(A, P)).code == 0
    db.close()


def test_missing_dependency_is_tempfail(mariadb_nextcloud, tmp_path: Path) -> None:
    """An import error deep inside (here: the database driver broken, which the one-shot
    store imports only when it first connects) must not become exit 1."""
    fake = tmp_path / "fake"
    (fake / "pymysql").mkdir(parents=True)
    (fake / "pymysql" / "__init__.py").write_text("raise ImportError('pymysql is broken')\n")
    r = checkpassword(mariadb_nextcloud.config_path, request(A, P), {"PYTHONPATH": str(fake)})
    assert (r.code, r.reply) == (111, b"")
    assert "pymysql is broken" in r.stderr


def test_log_lines_use_dovecots_prefix_under_dovecot(mariadb_nextcloud) -> None:
    """With LOG_SERVICE set (Dovecot's log pipe) a success is an info line, not an error."""
    r = checkpassword(mariadb_nextcloud.config_path, request(A, P), {"LOG_SERVICE": "1"})
    assert r.code == 0
    line = next(line for line in r.stderr.splitlines() if "verdict=ok" in line)
    assert line.startswith("\x01\x02")
    r = checkpassword(mariadb_nextcloud.config_path, request(A, P))
    assert next(line for line in r.stderr.splitlines() if "verdict=ok" in line).startswith("ncauth: ")


def test_python_module_entry_is_guarded_too(mariadb_nextcloud) -> None:
    """``ncauth checkpassword`` (the subcommand) answers like the dedicated program."""
    ncauth = Path(sys.executable).parent / "ncauth"
    r = checkpassword(
        mariadb_nextcloud.config_path,
        request(A, P),
        argv=[str(ncauth), "checkpassword", "--config", str(mariadb_nextcloud.config_path), REPLY_HELPER],
    )
    assert (r.code, r.reply) == (0, expected_reply(A))


def test_a_package_that_cannot_be_imported_is_tempfail(tmp_path: Path) -> None:
    """The console script itself must not turn an import failure (a half-upgraded or
    shadowed package) into Python's exit 1, which Dovecot reads as "wrong password"."""
    shadow = tmp_path / "shadow" / "ncauth"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('half-upgraded')\n")
    r = checkpassword(tmp_path / "absent.toml", request(A, P), env={"PYTHONPATH": str(shadow.parent)})
    assert (r.code, r.reply) == (111, b"")
    assert "cannot load ncauth.checkpassword" in r.stderr and "half-upgraded" in r.stderr
