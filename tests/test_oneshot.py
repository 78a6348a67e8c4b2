"""checkpassword's lean start-up: the one-shot store sends exactly what SQLAlchemy would
(SQL, parameters, connection arguments), and each checkpassword path imports only what it
needs, pinned by the modules a real process has loaded when it exits. No time is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from support import population
from support.checkpassword import checkpassword, expected_reply, request
from support.daemon import Daemon
from support.nextcloud import NextcloudDB
from support.population import A, P

from ncauth import oneshot, sqltext
from ncauth.config import NextcloudSection
from ncauth.store import ONESHOT_DRIVERS, Store, Tables, _connect_args, make_engine, statements

#: sample values for each statement's own parameters (lists for the expanded IN lists)
PARAMS: dict[str, dict[str, object]] = {
    "users_by_uid_lower": {"uid_lower": "alice"},
    "user_by_uid": {"uid": "Alice"},
    "all_users": {},
    "emails": {},
    "members": {"gids": ["admin", "mail users", "x'y"]},
    "uids_by_email": {"email": "alice@example.org"},
    "email_of": {"uid": "alice"},
    "tokens": {"tokens": ["a" * 128, "b" * 128]},
    "groups_of": {"uid": "alice"},
    "known_elsewhere": {"uid": "alice"},
    "quota_of": {"uid": "alice"},
    "quota_appconfig": {},
}
SECTION = NextcloudSection(database_urls=("sqlite:////unused.db",), connect_timeout=3, query_timeout=4.5)


def sqlalchemy_sends(dialect: str, name: str, params: dict[str, object], prefix: str) -> tuple[str, object]:
    """(SQL, parameters) as SQLAlchemy's own execution hands them to the driver."""
    d = sa.create_engine(f"{ONESHOT_DRIVERS[dialect]}://").dialect
    compiled = statements(Tables(prefix))[name].compile(dialect=d)
    full = {**compiled.construct_params(_check=False), **params}
    expanded = compiled._process_parameters_for_postcompile(full)
    assert not expanded.processors, f"{name}: a bind processor the one-shot store would not apply"
    if expanded.positiontup is not None:
        return expanded.statement, tuple(expanded.parameters[k] for k in expanded.positiontup)
    return expanded.statement, {k: v for k, v in expanded.parameters.items() if v is not None}


def test_every_statement_is_in_sqltext() -> None:
    names = set(statements(Tables("oc_")))
    assert names == set(PARAMS)
    for dialect in ONESHOT_DRIVERS:
        assert set(sqltext.STATEMENTS[dialect]) == names


@pytest.mark.parametrize("prefix", ["oc_", "", "nc2_", "x", "oc_nextcloud_"])
@pytest.mark.parametrize("dialect", sorted(ONESHOT_DRIVERS))
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_the_same_sql_and_parameters_as_sqlalchemy(name: str, dialect: str, prefix: str) -> None:
    assert not oneshot.unsupported(SECTION._replace(table_prefix=prefix))
    assert oneshot.bind(dialect, name, PARAMS[name], prefix) == sqlalchemy_sends(
        dialect, name, PARAMS[name], prefix
    )


@settings(max_examples=60, deadline=None)
@given(prefix=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True))
def test_every_plain_prefix_compiles_as_sqlalchemy_would(prefix: str) -> None:
    for dialect in ONESHOT_DRIVERS:
        assert oneshot.bind(dialect, "tokens", PARAMS["tokens"], prefix) == sqlalchemy_sends(
            dialect, "tokens", PARAMS["tokens"], prefix
        )


@pytest.mark.parametrize("prefix", ["OC_", "1oc_", "_oc", "Oc"])
def test_prefixes_that_need_quoting_go_to_sqlalchemy(prefix: str) -> None:
    section = SECTION._replace(table_prefix=prefix)
    assert "quoting" in oneshot.unsupported(section)
    store = oneshot.store_for(section)
    assert isinstance(store, Store)
    store.close()


def sqlalchemy_connects(url: str, section: NextcloudSection) -> tuple[list[object], dict[str, object]]:
    """The driver arguments of the engine ``store.Store`` makes for *url* (SQLite read-only;
    create_engine merges ``connect_args`` over the dialect's own)."""
    engine = make_engine(url, section)
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.update(_connect_args(engine.url, section))
    # psycopg: SQLAlchemy passes a copy of psycopg's global adapters (to register its
    # optional loaders on; none for ncauth's engines): the same types as psycopg's default
    context = kwargs.pop("context", None)
    if context is not None:
        import psycopg

        assert context.types is psycopg.adapters.types or list(context.types) == list(psycopg.adapters.types)
    return list(args), kwargs


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://nextcloud:s3cret@127.0.0.1:3306/nextcloud",
        "mysql+pymysql://nextcloud:p%40ss%3Aw%2Frd@db.example.org/nextcloud",
        "mysql+pymysql://nextcloud@localhost/nextcloud?unix_socket=/run/mysqld/mysqld.sock",
        "mysql+pymysql://nc:pw@db/nc?charset=utf8mb4",
        "mysql+pymysql://nc:@db/nc",
        "mysql+pymysql://@/nc?unix_socket=/run/mysqld/mysqld.sock",
        "postgresql+psycopg://nextcloud:s3cret@127.0.0.1:5432/nextcloud",
        "postgresql+psycopg://nextcloud:p%40ss%3Aw%2Frd@db.example.org/nextcloud",
        "postgresql+psycopg://nextcloud@/nextcloud?host=/run/postgresql",  # config_php's socket form
        "postgresql+psycopg://nc:pw@db/nc?sslmode=require&application_name=ncauth",
        "postgresql+psycopg://@/nc",
        "sqlite:///{tmp}/owncloud.db",
        "sqlite+pysqlite:///{tmp}/nc data/nc.db",
    ],
)
def test_the_same_connection_arguments_as_sqlalchemy(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also for SQLite, opened read-only the same way (the files exist: a missing one is refused)."""
    monkeypatch.chdir(tmp_path)
    url = url.replace("{tmp}", str(tmp_path))
    if url.startswith("sqlite"):
        path = Path(sa.engine.make_url(url).database or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    section = SECTION._replace(database_urls=(url,))
    t = oneshot.target(url, section)
    assert t is not None
    assert (t.prepare(), t.kwargs) == sqlalchemy_connects(url, section)
    assert not oneshot.unsupported(section)


@settings(max_examples=80, deadline=None)
@given(
    user=st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=12),
    password=st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=16),
    host=st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    database=st.from_regex(r"[A-Za-z0-9_$-]{1,16}", fullmatch=True),
)
def test_percent_encoded_credentials_reach_the_driver_as_sqlalchemy_passes_them(
    user: str, password: str, host: str, port: int | None, database: str
) -> None:
    for driver in ("mysql+pymysql", "postgresql+psycopg"):
        url = sa.URL.create(driver, user, password, host, port, database).render_as_string(
            hide_password=False
        )
        section = SECTION._replace(database_urls=(url,))
        t = oneshot.target(url, section)
        if t is not None:  # what it takes, it takes exactly as SQLAlchemy does
            assert (t.prepare(), t.kwargs) == sqlalchemy_connects(url, section)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://nc:pw@db/nc",  # MySQLdb, not PyMySQL
        "mariadb+pymysql://nc:pw@db/nc",
        "postgresql://nc:pw@db/nc",  # psycopg2 before SQLAlchemy 2.1
        "postgresql+psycopg2://nc:pw@db/nc",
        "postgresql+psycopg://nc:pw@db",
        "postgresql+psycopg://nc:pw@[::1]/nc",
        "postgresql+psycopg://nc:pw@/nc?host=db1,db2",  # several hosts
        "postgresql+psycopg://nc:pw@/nc?host=db:5433",  # a port in the host
        "postgresql+psycopg://nc:pw@db/nc?port=5433",
        "postgresql+psycopg://nc:pw@db/nc?options=-c%20search_path%3Dx",
        "postgresql+psycopg://nc:pw@db/nc?sslmode=disable&sslmode=require",
        "mysql+pymysql://nc:pw@[::1]/nc",
        "mysql+pymysql://nc:pw@db/nc?ssl_ca=/etc/ssl/ca.pem",
        "mysql+pymysql://nc:pw@db/nc?charset=utf8mb4&charset=latin1",
        "mysql+pymysql://nc:pw@db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///nc.db?mode=ro&uri=true",
        # a '%' in the database part: SQLAlchemy 2.1 unquotes it, 1.4 and 2.0 do not
        "sqlite+pysqlite:///tmp/nc%20data/nc.db",
        "sqlite:///tmp/why%3Fnot%23/nc.db",
        "mysql+pymysql://nc:pw@db/nc%5Fold",
    ],
)
def test_other_urls_go_to_sqlalchemy(url: str) -> None:
    assert oneshot.target(url, SECTION) is None
    assert oneshot.unsupported(SECTION._replace(database_urls=("sqlite:////x.db", url)))


def test_pymysql_without_cryptography_loads_it_when_a_server_asks_for_rsa() -> None:
    """MySQL 8's caching_sha2_password full authentication over plain TCP encrypts the
    password with the server's RSA key: the one use of cryptography, loaded then."""
    code = """
import sys
from ncauth import oneshot
auth = oneshot.pymysql()._auth
assert "cryptography" not in sys.modules and "ssl" in sys.modules  # TLS as SQLAlchemy's store has it
try:
    auth.sha2_rsa_encrypt(b"pw", b"s" * 20, b"")
except RuntimeError:
    pass
else:
    raise AssertionError("RSA without cryptography")
assert oneshot.load_rsa() and not oneshot.load_rsa()
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
assert len(auth.sha2_rsa_encrypt(b"pw", b"s" * 20, pem)) == 256
print("ok")
"""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


# --- what each path imports, in a real process -------------------------------------------

#: runs ncauth-checkpassword's entry and, as it exits, writes the modules it loaded to stderr
PROBE = """
import os, sys
real_exit = os._exit
def report(code):
    sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n")
    sys.stderr.flush()
    real_exit(code)
os._exit = report
from ncauth_checkpassword import main
sys.argv[0] = "ncauth-checkpassword"
main()
"""
#: loaded by no checkpassword path that ends as a decision on a PHP-made argon2id hash
#: (``ssl`` only by PyMySQL, which uses TLS wherever the server offers it)
NEVER = {"sqlalchemy", "argon2", "bcrypt", "cryptography", "ssl"}


def loaded(
    config: Path, env: dict[str, str] | None = None, *extra: str, full: bool = False
) -> tuple[int, bytes, set[str]]:
    """(exit status, fd 4, the top-level packages loaded; every module's name if *full*)."""
    argv = [sys.executable, "-c", PROBE, "--config", str(config), *extra]
    r = checkpassword(config, request(A, P), env, argv=argv)
    line = next(line for line in r.stderr.splitlines() if line.startswith("MODULES "))
    names = line.split()[1:]
    return r.code, r.reply, set(names) if full else {name.split(".")[0] for name in names}


def test_in_process_decision_imports_no_sqlalchemy(nextcloud_sqlite: NextcloudDB) -> None:
    config = nextcloud_sqlite.write_config(population.STANDARD_CONFIG)
    code, reply, modules = loaded(config)
    assert (code, reply) == (0, expected_reply(A))
    assert not modules & NEVER, sorted(modules & NEVER)
    assert {"sqlite3", "nacl"} <= modules


def test_in_process_decision_on_mariadb_imports_no_sqlalchemy(mariadb, tmp_path: Path) -> None:
    db = NextcloudDB(mariadb.create_database("nc_oneshot_imports"), "oc_", tmp_path).populate()
    try:
        code, reply, modules = loaded(db.write_config(population.STANDARD_CONFIG))
    finally:
        db.close()
    assert (code, reply) == (0, expected_reply(A))
    assert not modules & (NEVER - {"ssl"}), sorted(modules & NEVER)
    assert {"pymysql", "ssl"} <= modules


def test_in_process_decision_on_postgresql_imports_no_sqlalchemy(postgres, tmp_path: Path) -> None:
    """psycopg alone, with the statements SQLAlchemy's psycopg dialect sends (casts and
    all); every case of the standard population gets the store's own verdict."""
    db = NextcloudDB(postgres.create_database("nc_oneshot_pg"), "oc_", tmp_path).populate()
    try:
        config = db.write_config(population.STANDARD_CONFIG)
        code, reply, modules = loaded(config)
        assert (code, reply) == (0, expected_reply(A))
        assert not modules & (NEVER - {"ssl"}), sorted(modules & NEVER)  # psycopg's asyncio loads ssl
        assert "psycopg" in modules
        from ncauth import config as config_mod
        from ncauth.policy import Authenticator

        section = config_mod.load(str(config)).nextcloud
        assert isinstance(oneshot.store_for(section), oneshot.OneShotStore)
        both = [
            Authenticator(config_mod.load(str(config)), store)
            for store in (oneshot.OneShotStore(section), Store(section))
        ]
        try:
            for case in population.CASES:
                one, other = (
                    a.authenticate(case.login, case.password_bytes, remote_ip=case.remote_ip) for a in both
                )
                assert one == other and one.outcome.value == case.outcome, (case, one, other)
        finally:
            for a in both:
                a.store.close()
    finally:
        db.close()


def test_relay_imports_neither_database_nor_hash_nor_logging(sqlite_daemon: Daemon, tmp_path: Path) -> None:
    """At the default log level: debug logging has a line to write on every path."""
    config = tmp_path / "relay.toml"
    config.write_text(sqlite_daemon.config.read_text().replace('level = "debug"', 'level = "info"'))
    config.chmod(0o600)
    code, reply, modules = loaded(config)
    assert (code, reply) == (0, expected_reply(A))
    heavy = NEVER | {"nacl", "pymysql", "sqlite3", "logging", "dataclasses", "inspect", "hashlib"}
    assert not modules & heavy, sorted(modules & heavy)


#: what checkpassword --socket never loads when the daemon answers: no TOML parse, no typing
NOT_ON_THE_SOCKET_RELAY = {"tomllib", "typing", "ncauth.config", "datetime", "logging"}


def test_socket_relay_answers_before_reading_the_config(sqlite_daemon: Daemon, tmp_path: Path) -> None:
    """``--socket`` (what dovecot-config writes with a daemon configured): the daemon's verdict
    comes back without the config being read, so a missing config file does not matter."""
    missing = tmp_path / "no-such.toml"
    code, reply, modules = loaded(missing, None, "--socket", str(sqlite_daemon.socket), full=True)
    assert (code, reply) == (0, expected_reply(A))
    assert not modules & NOT_ON_THE_SOCKET_RELAY, sorted(modules & NOT_ON_THE_SOCKET_RELAY)


def test_socket_relay_without_a_daemon_lets_the_config_decide(
    nextcloud_sqlite: NextcloudDB, tmp_path: Path
) -> None:
    """Nobody at ``--socket``: the config is read then; forward = "auto" decides in-process,
    "always" is a temporary failure, and an unreadable config is one too (never exit 1)."""
    nobody = str(tmp_path / "nobody.sock")
    auto = nextcloud_sqlite.write_config(population.STANDARD_CONFIG + f'[daemon]\nsocket = "{nobody}"\n')
    code, reply, modules = loaded(auto, None, "--socket", nobody, full=True)
    assert (code, reply) == (0, expected_reply(A))
    assert "ncauth.config" in modules
    always = nextcloud_sqlite.write_config(
        population.STANDARD_CONFIG + f'[daemon]\nsocket = "{nobody}"\nforward = "always"\n'
    )
    assert loaded(always, None, "--socket", nobody)[:2] == (111, b"")
    assert loaded(tmp_path / "missing.toml", None, "--socket", nobody)[:2] == (111, b"")


def test_skipping_the_default_cas_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA locations are pointed at nothing only while PyMySQL connects: an admin's own
    SSL_CERT_FILE comes back, an unset one stays unset."""
    import os

    monkeypatch.setenv("SSL_CERT_FILE", "/etc/admin/ca.pem")
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    saved = oneshot._skip_default_cas()
    assert os.environ["SSL_CERT_FILE"] != "/etc/admin/ca.pem" and "SSL_CERT_DIR" in os.environ
    oneshot._restore(saved)
    assert os.environ["SSL_CERT_FILE"] == "/etc/admin/ca.pem" and "SSL_CERT_DIR" not in os.environ
