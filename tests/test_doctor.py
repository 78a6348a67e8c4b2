"""``ncauth doctor`` against deliberately broken installations made of real parts: a config
some user cannot read, a MariaDB user with too many grants and one with exactly ``ncauth
sql``'s, a wrong ``table_prefix``, a missing, stale or closed socket and a running daemon,
Dovecot 2.3 configs (read by the real ``doveconf``) without the snippet or with a passdb
before it, and an installation where everything is right (exit 0)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import population
from support.daemon import Daemon, daemon_config
from support.dbservers import Server
from support.dovecot_e2e import _db_user, start
from support.dovecot_harness import SYSTEM_PYTHON, Dovecot, dovecot_available, dovecot_tmpdir
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB, database_url
from support.require import unavailable

from ncauth.config import Config

NCAUTH = Path(sys.executable).parent / "ncauth"
VENV = Path(sys.executable).parent.parent


def doctor(*args: str, dovecot: bool = True) -> tuple[int, list[str]]:
    """``ncauth doctor`` as an admin runs it (root, a process of its own): exit, lines.
    *dovecot* False: as on a host without Dovecot (no doveconf on PATH)."""
    env = None if dovecot else {**os.environ, "PATH": str(NCAUTH.parent)}
    proc = subprocess.run(
        [str(NCAUTH), "doctor", *args], capture_output=True, text=True, timeout=120, env=env
    )
    record_output(proc.stdout, proc.stderr)
    assert proc.stderr == "", proc.stderr
    return proc.returncode, proc.stdout.splitlines()


def line(lines: list[str], start: str) -> str:
    """The one finding that starts with *start* (level and subject)."""
    found = [ln for ln in lines if ln.startswith(start)]
    assert len(found) == 1, "\n".join(lines)
    return found[0]


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is root-only)."""
    if os.geteuid() != 0:
        unavailable("ncauth doctor checks as other users only as root")
    d = dovecot_tmpdir("ncauth-doctor-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sqlite_db(root: Path) -> Iterator[NextcloudDB]:
    db = NextcloudDB(f"sqlite:///{root / 'nextcloud.db'}", "oc_", root).populate()
    (root / "nextcloud.db").chmod(0o640)
    yield db
    db.close()


@pytest.fixture
def doveconf() -> None:
    if not shutil.which("doveconf"):
        unavailable("no doveconf (apt-get install dovecot-core)")


def test_a_config_that_cannot_load_exits_78(tmp_path: Path) -> None:
    code, lines = doctor("--config", str(tmp_path / "missing.toml"))
    assert code == 78
    assert "no such file" in line(lines, f"FAIL config {tmp_path / 'missing.toml'}")


def test_config_unreadable_for_the_dovecot_user_then_fixed(sqlite_db: NextcloudDB, root: Path) -> None:
    config = sqlite_db.write_config(population.STANDARD_CONFIG)  # root:root 0600
    code, lines = doctor("--config", str(config), "--dovecot-user", "nobody")
    finding = line(lines, f"FAIL config {config} as nobody")
    assert "ermission denied" in finding and f"chown root:nogroup {config} && chmod 0640" in finding
    assert code == 1

    os.chown(config, 0, grp.getgrnam("nogroup").gr_gid)
    config.chmod(0o640)
    os.chown(root / "nextcloud.db", 0, grp.getgrnam("nogroup").gr_gid)
    _, lines = doctor("--config", str(config), "--dovecot-user", "nobody")
    assert "can read it and" in line(lines, f"OK   config {config} as nobody")


def test_the_database_file_of_a_config_a_user_cannot_read(sqlite_db: NextcloudDB, root: Path) -> None:
    """The config is readable by nobody's group, the SQLite file is not: still a failure."""
    config = sqlite_db.write_config(population.STANDARD_CONFIG)
    os.chown(config, 0, grp.getgrnam("nogroup").gr_gid)
    config.chmod(0o640)
    _, lines = doctor("--config", str(config), "--dovecot-user", "nobody")
    assert "nextcloud.db" in line(lines, f"FAIL config {config} as nobody")


def test_config_unreadable_for_the_daemon_user(sqlite_db: NextcloudDB, root: Path) -> None:
    """With a [daemon] socket, the daemon's user must read the config too."""
    config, _ = daemon_config(sqlite_db, root)  # root:root 0600
    _, lines = doctor("--config", str(config), "--daemon-user", "nobody")
    assert "the daemon (ncauth serve): Permission denied" in line(lines, f"FAIL config {config} as nobody")
    _, lines = doctor("--config", str(config), "--daemon-user", "root")
    assert "the daemon (ncauth serve) can read it" in line(lines, f"OK   config {config} as root")


def test_wrong_table_prefix_names_the_one_that_exists(sqlite_db: NextcloudDB, root: Path) -> None:
    config = root / "wrong.toml"
    config.write_text(population.config_text(sqlite_db.url, "nc_") + population.STANDARD_CONFIG)
    config.chmod(0o600)
    code, lines = doctor("--config", str(config))
    finding = line(lines, "FAIL table_prefix 'nc_'")
    assert "missing nc_users" in finding and "set table_prefix = 'oc_'" in finding
    assert code == 1
    _, lines = doctor("--config", str(sqlite_db.write_config(population.STANDARD_CONFIG)))
    assert "oc_users" in line(lines, "OK   table_prefix 'oc_'")


@pytest.mark.slow
def test_grants_exact_too_broad_and_missing(mariadb: Server, db: NextcloudDB, root: Path) -> None:
    """A user made from ``ncauth sql``'s grants is exactly right; GRANT ALL is too broad;
    a revoked column is missing. The password is never printed (the leak check)."""
    config = db.write_config(population.STANDARD_CONFIG)
    name = f"doctor_{os.getpid()}"
    url = _db_user(mariadb, db.url, VENV, config, "ncauth", name)
    config.write_text(population.config_text(url, db.prefix) + population.STANDARD_CONFIG)
    who = f"grants of '{name}'@'127.0.0.1'"

    _, lines = doctor("--config", str(config))
    assert "exactly the SELECT grants" in line(lines, f"OK   {who}")
    assert not any(ln.startswith(("WARN grants", "FAIL grants")) for ln in lines)

    database = db.url.rsplit("/", 1)[1]
    mariadb.execute(f"GRANT ALL ON `{database}`.* TO '{name}'@'127.0.0.1'")
    _, lines = doctor("--config", str(config))
    assert f"ALL PRIVILEGES ON {database}.*" in line(lines, f"WARN {who}")

    mariadb.execute(f"REVOKE ALL PRIVILEGES ON `{database}`.* FROM '{name}'@'127.0.0.1'")
    mariadb.execute(f"REVOKE SELECT (password) ON `{database}`.oc_users FROM '{name}'@'127.0.0.1'")  # noqa: S608 - test's own names
    code, lines = doctor("--config", str(config))
    assert f"missing SELECT (password) ON {database}.oc_users" in line(lines, f"FAIL {who}")
    assert code == 1
    mariadb.execute(f"DROP USER '{name}'@'127.0.0.1'")


@pytest.mark.slow
def test_postgresql_grants_exact_and_too_broad(
    postgres: Server, request: pytest.FixtureRequest, root: Path
) -> None:
    """PostgreSQL's privilege catalog: a role with exactly ``ncauth sql``'s grants, then
    one given every table of the schema."""
    url = database_url("postgresql", request, root)
    db = NextcloudDB(url, "oc_", root).populate()
    database = url.rsplit("/", 1)[1]
    name = f"doctor_{os.getpid()}"
    config = db.write_config(population.STANDARD_CONFIG)
    sql = subprocess.run(
        [str(NCAUTH), "sql", "--config", str(config), "--ncauth-user", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(f"({name}):\n", 1)[1]
    for statement in filter(None, (s.split("--")[0].strip() for s in sql.split(";\n"))):
        postgres.execute(statement, database=database)
    config.write_text(
        population.config_text(postgres.url(database, name), db.prefix) + population.STANDARD_CONFIG
    )
    try:
        _, lines = doctor("--config", str(config))
        assert "exactly the SELECT grants" in line(lines, f'OK   grants of "{name}"')

        postgres.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{name}"', database=database)
        code, lines = doctor("--config", str(config), dovecot=False)
        assert line(lines, "SKIP dovecot: not installed")
        finding = line(lines, f'WARN grants of "{name}"')
        assert (
            "INSERT ON public.oc_users" in finding and "SELECT on every column of public.oc_users" in finding
        )
        assert code == 0  # warnings alone
        code, _ = doctor("--config", str(config), "--strict", dovecot=False)
        assert code == 1
    finally:
        db.close()
        postgres.execute(f'DROP OWNED BY "{name}"', database=database)
        postgres.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def daemon(sqlite_db: NextcloudDB, root: Path) -> Iterator[Daemon]:
    """``ncauth serve`` on a socket of group dovecot in a directory every user may enter."""
    config, sock = daemon_config(sqlite_db, root, 'socket_group = "dovecot"\n')
    for path in (config, root / "nextcloud.db"):
        os.chown(path, 0, grp.getgrnam("dovecot").gr_gid)
    config.chmod(0o640)
    d = Daemon(config, sock)
    yield d
    d.stop()


def test_a_running_daemon_and_a_socket_dovecot_may_use(daemon: Daemon) -> None:
    _, lines = doctor("--config", str(daemon.config), "--dovecot-user", "dovecot")
    assert line(lines, f"OK   socket {daemon.socket}:").endswith("root:dovecot 0660")
    assert "can connect" in line(lines, f"OK   socket {daemon.socket} as dovecot")
    assert "answers" in line(lines, "OK   daemon")
    # (the host's own Dovecot, if any, is not this test's business)
    assert [ln for ln in lines if ln.startswith("FAIL") and not ln.startswith("FAIL dovecot")] == []


def test_a_socket_of_the_wrong_mode(daemon: Daemon) -> None:
    daemon.socket.chmod(0o600)
    code, lines = doctor("--config", str(daemon.config), "--dovecot-user", "dovecot")
    assert "the group cannot connect" in line(lines, f"FAIL socket {daemon.socket}:")
    assert "cannot connect" in line(lines, f"FAIL socket {daemon.socket} as dovecot")
    assert code == 1
    daemon.socket.chmod(0o666)
    _, lines = doctor("--config", str(daemon.config), "--dovecot-user", "dovecot")
    assert "every local user may connect" in line(lines, f"WARN socket {daemon.socket}:")


def test_a_socket_directory_others_may_write(daemon: Daemon) -> None:
    """Whoever may write the socket's directory could put their own daemon there and
    answer every login: doctor names the directory and who, sticky bit or not."""
    directory = daemon.socket.parent
    warning = f"WARN socket {daemon.socket}: {directory}"
    _, lines = doctor("--config", str(daemon.config), "--dovecot-user", "dovecot")
    assert not [ln for ln in lines if ln.startswith(warning)], "\n".join(lines)
    try:
        for mode, who in ((0o1777, "every local user"), (0o775, "group dovecot")):
            directory.chmod(mode)
            if mode == 0o775:
                os.chown(directory, 0, grp.getgrnam("dovecot").gr_gid)
            _, lines = doctor("--config", str(daemon.config), "--dovecot-user", "dovecot")
            assert f"({mode:04o}) is writable by {who}, who could put a socket" in line(lines, warning)
    finally:
        os.chown(directory, 0, 0)
        directory.chmod(0o755)


def test_a_socket_served_by_another_user(sqlite_db: NextcloudDB, root: Path) -> None:
    """A socket that someone else made and listens on (here: user nobody's) would answer
    for every login: doctor names its owner and the listening process's user, a failure
    when the daemon's user is known, a warning when doctor cannot tell it."""
    nobody = pwd.getpwnam("nobody")
    fake = root / "fake"
    fake.mkdir()
    os.chown(fake, nobody.pw_uid, nobody.pw_gid)
    config, _ = daemon_config(sqlite_db, root)
    sock = fake / "auth.sock"
    config.write_text(config.read_text().replace(str(root / "auth.sock"), str(sock)))
    serve = "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen()\n"
    serve += "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", serve, str(sock)],  # one user nobody may run
        stdout=subprocess.PIPE,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        _, lines = doctor("--config", str(config), "--daemon-user", "root")
        found = [ln for ln in lines if ln.startswith(f"FAIL socket {sock}: ")]
        assert any("owned by user nobody, not root or the daemon's user root" in ln for ln in found), lines
        assert any(f"listened on by pid {proc.pid}, which runs as user nobody" in ln for ln in found), lines
    finally:
        proc.kill()
        proc.wait()


def test_dovecot_not_among_the_allowed_peers(sqlite_db: NextcloudDB, root: Path) -> None:
    config, sock = daemon_config(sqlite_db, root, 'socket_group = "dovecot"\nallowed_users = ["root"]\n')
    d = Daemon(config, sock)
    try:
        _, lines = doctor("--config", str(config), "--dovecot-user", "dovecot")
    finally:
        d.stop()
    assert "add 'dovecot' to allowed_users" in line(lines, "FAIL [daemon] allowed_users")


def test_missing_socket_and_a_daemon_not_answering(sqlite_db: NextcloudDB, root: Path) -> None:
    config, sock = daemon_config(sqlite_db, root)
    code, lines = doctor("--config", str(config))
    assert "missing — start ncauth.socket" in line(lines, f"FAIL socket {sock}")
    assert code == 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:  # bound, nobody listening
        stale.bind(str(sock))
        sock.chmod(0o660)
        _, lines = doctor("--config", str(config))
    assert "not answering" in line(lines, "FAIL daemon")


def _dovecot_conf(directory: Path, auth: str) -> Path:
    """A Dovecot 2.3 config as the test harness writes it, with *auth* included (not started)."""
    if reason := dovecot_available():
        unavailable(f"no usable Dovecot 2.3: {reason}")
    return Dovecot(directory, auth).write_config()


def _snippet(config: Path, mode: str = "checkpassword", version: str = "2.3", *more: str) -> str:
    """What ``ncauth dovecot-config`` prints (or, with ``--output``, writes)."""
    proc = subprocess.run(
        [str(NCAUTH), "dovecot-config", "--config", str(config), "--mode", mode, "--dovecot", version, *more],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


PAM = "passdb {\n  driver = pam\n}\n"
STATIC = "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup allow_all_users=yes\n}\n"


@pytest.mark.dovecot
def test_dovecot_without_the_snippet_with_a_passdb_first_and_right(
    sqlite_db: NextcloudDB, root: Path
) -> None:
    config = sqlite_db.write_config(population.STANDARD_CONFIG)
    snippet = _snippet(config)
    subject = "dovecot 2.3 ("

    conf = _dovecot_conf(root / "none", PAM + STATIC)
    code, lines = doctor("--config", str(config), "--dovecot-config", str(conf))
    assert "no ncauth passdb in doveconf -n (pam)" in line(lines, f"FAIL {subject}")
    assert code == 1

    conf = _dovecot_conf(root / "first", PAM + snippet)
    _, lines = doctor("--config", str(config), "--dovecot-config", str(conf))
    assert "passdb pam comes before ncauth's" in line(lines, f"FAIL {subject}")
    assert "checkpassword mode" in line(lines, f"OK   {subject}")

    conf = _dovecot_conf(root / "after", snippet + PAM)
    _, lines = doctor("--config", str(config), "--dovecot-config", str(conf))
    assert "passdb pam comes after ncauth's" in line(lines, f"WARN {subject}")

    conf = _dovecot_conf(root / "right", snippet)
    _, lines = doctor("--config", str(config), "--dovecot-config", str(conf))
    assert [ln for ln in lines if ln.startswith(("FAIL dovecot", "WARN dovecot"))] == []
    # checkpassword mode: Dovecot's auth user (from doveconf) must read the config
    assert line(lines, f"FAIL config {config} as dovecot")


@pytest.mark.slow
@pytest.mark.dovecot
def test_an_installation_where_all_is_well(mariadb: Server, db: NextcloudDB, dovecot_venv: Path) -> None:
    """Dovecot 2.3 running checkpassword with the daemon, the database user made from
    ``ncauth sql``, config root:dovecot 0640: exit 0; an unknown user: exit 1."""
    dovecot, server = start("checkpassword", "2.3", True, mariadb, db.url, db.prefix, dovecot_venv)
    assert server is not None
    try:
        args = ["--config", str(dovecot.root / "ncauth.toml"), "--dovecot-config", str(dovecot.conf_path)]
        code, lines = doctor(*args, "--daemon-user", "root", "--user", "alice@example.org")
        assert code == 0, "\n".join(lines)
        assert not [ln for ln in lines if ln.startswith(("FAIL", "WARN"))]
        for start_ in ("OK   grants of", "OK   daemon", "OK   lookup alice@example.org", "OK   doveadm user"):
            line(lines, start_)
        code, lines = doctor(*args, "--user", "nobody@example.org")
        assert "UNKNOWN" in line(lines, "FAIL lookup nobody@example.org")
        assert line(lines, "FAIL doveadm user nobody@example.org")
        assert code == 1
    finally:
        dovecot.stop()
        server.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)


def _daemon_config_and_snippet(tmp_path: Path, mode: str, version: str) -> tuple[Config, str]:
    """A config with a daemon socket in *tmp_path*, and the snippet dovecot-config writes for it."""
    from ncauth import config as config_mod

    path = tmp_path / "ncauth.toml"
    path.write_text(
        population.config_text("sqlite:////nonexistent.db", "oc_")
        + population.STANDARD_CONFIG
        + f'\n[daemon]\nsocket = "{tmp_path / "auth.sock"}"\n'
    )
    path.chmod(0o600)
    _snippet(path, mode, version, "--output", str(tmp_path / "ncauth.conf.ext"))
    return config_mod.load(str(path)), (tmp_path / "ncauth.conf.ext").read_text()


def test_dovecot_24_lua_snippet_behind_a_passdb_and_talking_to_another_socket(tmp_path: Path) -> None:
    """Dovecot 2.4's syntax (``passdb lua { lua_file = … }``), read as ``doveconf -n`` prints
    it: Lua mode is right on 2.4, checkpassword is not, a pam passdb before it answers first,
    and a Lua script made for another socket is found out."""
    from ncauth import config as config_mod
    from ncauth import doctor as doc

    config, snippet = _daemon_config_and_snippet(tmp_path, "lua", "2.4")
    head = "# 2.4.1-4 (7d8c0e5759): /etc/dovecot/dovecot.conf\n"

    def findings(text: str, cfg: config_mod.Config = config) -> list[str]:
        conf = doc.parse_doveconf(head + text)
        return [f.line() for f in doc.dovecot_findings(doc.Options(), cfg, conf)]

    assert findings(snippet) == ["OK   dovecot 2.4 (/etc/dovecot/dovecot.conf): ncauth passdb in lua mode"]
    assert "passdb pam comes before ncauth's" in findings("passdb pam {\n}\n" + snippet)[1]
    checkpassword = "passdb {\n  driver = checkpassword\n  args = /usr/bin/ncauth-checkpassword\n}\n"
    assert "checkpassword on Dovecot 2.4" in findings(checkpassword)[0]
    moved = config._replace(daemon=config.daemon._replace(socket="/run/ncauth/other.sock"))
    assert (
        f"talks to {tmp_path / 'auth.sock'}, the daemon listens on /run/ncauth/other.sock"
        in (findings(snippet, moved)[-1])
    )


def test_checkpassword_relaying_to_another_socket_is_found_out(tmp_path: Path) -> None:
    """The snippet's ``--socket`` (checkpassword asks that daemon before reading its config)
    must be the config's [daemon] socket: a moved socket would send every login in-process."""
    from ncauth import doctor as doc

    config, snippet = _daemon_config_and_snippet(tmp_path, "checkpassword", "2.3")
    assert f"--socket {tmp_path / 'auth.sock'}" in snippet
    conf = doc.parse_doveconf("# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf\n" + snippet)
    assert [f.level for f in doc.dovecot_findings(doc.Options(), config, conf)] == ["OK"]
    moved = config._replace(daemon=config.daemon._replace(socket="/run/ncauth/other.sock"))
    lines = [f.line() for f in doc.dovecot_findings(doc.Options(), moved, conf)]
    assert any(
        line.startswith("FAIL") and f"asks the daemon at {tmp_path / 'auth.sock'}" in line for line in lines
    ), lines
