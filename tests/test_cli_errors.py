"""What a new user runs into, as the real commands answer it: one clear line and the
right exit status (sysexits.h for ``ncauth``, Dovecot's table for checkpassword),
never a traceback and never a silent surprise (issue 14, section 3)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import pty
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from support import leakcheck, population
from support.checkpassword import PROGRAM, REPLY_HELPER, checkpassword, request
from support.daemon import Daemon, daemon_config
from support.nextcloud import NextcloudDB

from ncauth import cli, store
from ncauth.config import load

NCAUTH = str(Path(sys.executable).parent / "ncauth")
EXAMPLE = '[accounts]\ndomains = ["example.org"]\n'
#: a MariaDB that is down: nothing listens on port 1
DOWN_URL = "mysql+pymysql://nc:pw@127.0.0.1:1/nextcloud"

#: every subcommand that reads the config, with the arguments it needs besides --config
COMMANDS = {
    "verify": [population.A],
    "lookup": [population.A],
    "dovecot-config": ["--mode", "lua", "--dovecot", "2.4"],
    "sql": [],
    "postfix-config": [],
    "nextcloud-mail": ["--imap-host", "mail.example.org"],
    "users": [],
    "serve": [],
    "status": [],
}


def ncauth(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = leakcheck.run([NCAUTH, *args], input=stdin)
    return proc.returncode, proc.stdout, proc.stderr


def one_line(err: str) -> str:
    """The message of a command that failed at once: exactly one line, no traceback."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def config_file(tmp_path: Path, nextcloud: str, extra: str = EXAMPLE, name: str = "ncauth.toml") -> Path:
    path = tmp_path / name
    path.write_text(f"[nextcloud]\n{nextcloud}\n{extra}")
    path.chmod(0o600)
    return path


@pytest.fixture
def sqlite_config(nextcloud_sqlite: NextcloudDB) -> Path:
    """The standard population in SQLite and its config, with a daemon socket beside it."""
    config, _sock = daemon_config(nextcloud_sqlite, nextcloud_sqlite.directory)
    return config


# -- help ------------------------------------------------------------------------------


def _undocumented(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    missing = []
    for action in parser._actions:
        name = f"{prefix} {'/'.join(action.option_strings) or action.dest}"
        if not action.help:
            missing.append(name)
        if isinstance(action, argparse._SubParsersAction):
            missing += [f"{prefix} {c.dest}" for c in action._choices_actions if not c.help]
            for command, sub in action.choices.items():
                missing += _undocumented(sub, f"{prefix} {command}")
    return missing


def test_every_option_and_argument_has_help() -> None:
    """``--help`` explains everything it lists: no option, argument or command without text."""
    assert _undocumented(cli._parser(), "ncauth") == []


def test_the_walk_finds_an_undocumented_option() -> None:
    parser = cli._parser()
    parser.add_argument("--secretive")
    assert _undocumented(parser, "ncauth") == ["ncauth --secretive"]


# -- --output --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("missing/ncauth.conf.ext", "missing does not exist"),
        (".", "it is a directory (give a file name"),
        ("plain-file/ncauth.conf.ext", "plain-file is not a directory"),
    ],
)
def test_output_that_cannot_be_written(tmp_path: Path, target: str, problem: str) -> None:
    config = config_file(tmp_path, 'database_url = "sqlite:////x.db"')
    (tmp_path / "plain-file").write_text("")
    out = (tmp_path / target).resolve()
    code, stdout, err = ncauth(
        "dovecot-config", "--config", str(config), "--mode", "sql", "--output", str(out)
    )
    assert code == cli.EX_CANTCREAT
    assert one_line(err).startswith(f"ncauth dovecot-config: cannot write {out}: ")
    assert problem in err and stdout == ""


def test_output_pair_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """2.3 SQL mode writes two files: when the second cannot be written, neither is."""
    config = config_file(tmp_path, 'database_url = "mysql+pymysql://nc:pw@db/nextcloud"')
    (tmp_path / "ncauth-sql.conf.ext").mkdir()
    out = tmp_path / "ncauth.conf.ext"
    code, _, err = ncauth(
        "dovecot-config", "--config", str(config), "--mode", "sql", "--dovecot", "2.3", "-o", str(out)
    )
    assert code == cli.EX_CANTCREAT
    assert f"cannot write {tmp_path / 'ncauth-sql.conf.ext'}: it is a directory" in one_line(err)
    assert not out.exists()


# -- serve's sockets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "hint"),
    [("daemon", "ncauth.socket makes /run/ncauth"), ("postfix", "RuntimeDirectory=")],
)
def test_serve_with_a_socket_in_a_missing_directory(
    nextcloud_sqlite: NextcloudDB, tmp_path: Path, section: str, hint: str
) -> None:
    missing = tmp_path / "run-ncauth" / "auth.sock"
    daemon_socket = missing if section == "daemon" else tmp_path / "auth.sock"
    extra = f'[postfix]\nsocket = "{missing}"\n' if section == "postfix" else ""
    config = nextcloud_sqlite.write_config(
        population.STANDARD_CONFIG + f'\n[daemon]\nsocket = "{daemon_socket}"\n' + extra
    )
    code, _, err = ncauth("serve", "--config", str(config))
    assert code == cli.EX_CONFIG, err
    assert "Traceback" not in err
    message = err.splitlines()[-1]
    assert f"[{section}] socket {missing}: the directory {missing.parent} does not exist" in message
    assert hint in message and f"install -d -m 0755 {missing.parent}" in message


# -- the config file -----------------------------------------------------------------


def test_config_not_utf8_is_a_config_error_in_every_command(tmp_path: Path) -> None:
    """A Latin-1 file (an editor's default elsewhere): one line naming the file and line."""
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'[nextcloud]\ndatabase_url = "sqlite:////x.db"\n# Gr\xfc\xdfe\n')
    config.chmod(0o600)
    expected = f"{config}: not UTF-8 (byte 0xfc on line 3): save it as UTF-8"
    for command, args in COMMANDS.items():
        code, _, err = ncauth(command, "--config", str(config), *args)
        assert code == cli.EX_CONFIG, (command, err)
        assert "Traceback" not in err and err.splitlines()[-1].endswith(expected), (command, err)
    r = checkpassword(config, request(population.A, population.P))
    assert r.code == 111 and "Traceback" not in r.stderr and expected in r.stderr


@pytest.mark.parametrize("command", [*COMMANDS, "checkpassword"])
def test_config_option_is_honoured_before_and_after_the_command(tmp_path: Path, command: str) -> None:
    """``ncauth --config FILE COMMAND`` reads FILE, as ``ncauth COMMAND --config FILE`` does."""
    for position in ("before", "after"):
        missing = str(tmp_path / f"{position}.toml")
        options = ["--config", missing]
        args = [*options, command] if position == "before" else [command, *options]
        if command == "checkpassword":  # as Dovecot runs it: fd 3 open, the reply program last
            r = checkpassword("", request(population.A, population.P), argv=[NCAUTH, *args, REPLY_HELPER])
            code, err, expected_code = r.code, r.stderr, 111
        else:
            code, _, err = ncauth(*args, *COMMANDS[command])
            expected_code = cli.EX_CONFIG
        assert code == expected_code, (position, err)
        assert f"{missing}: no such file" in err and "/etc/ncauth" not in err, (position, err)


def test_config_option_given_twice(tmp_path: Path) -> None:
    """Twice the same file is fine; two different files are a usage error (64), or
    checkpassword's temporary failure."""
    config = config_file(tmp_path, 'database_url = "mysql+pymysql://nc@db/nextcloud"')
    code, out, err = ncauth("--config", str(config), "sql", "--config", str(config))
    assert code == 0 and "GRANT" in out, err
    other = str(tmp_path / "other.toml")
    code, _, err = ncauth("--config", str(config), "sql", "--config", other)
    assert code == cli.EX_USAGE
    assert f"--config {config} before the command and --config {other} after it: give one" in err
    r = checkpassword(
        "",
        request(population.A, population.P),
        argv=[NCAUTH, "--config", str(config), "checkpassword", "--config", other],
    )
    assert r.code == 111 and "give one" in r.stderr


# -- verify ----------------------------------------------------------------------------


def _run_on_a_terminal(argv: list[str], keys: bytes, prompt: bytes) -> tuple[int, str]:
    """Run *argv* on a new pseudo-terminal, type *keys* once *prompt* shows; (status, screen)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a shell's job may have inherited SIGINT ignored
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execv(argv[0], argv)  # noqa: S606 - the test's own argument list, no shell
        finally:
            os._exit(127)  # never back into pytest in the child
    screen, sent, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        if not sent and prompt in screen:
            os.write(fd, keys)
            sent = True
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child has gone and the terminal with it
            break
        if not chunk:
            break
        screen += chunk
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = screen.decode(errors="replace").replace("\r\n", "\n")
    leakcheck.record_output(text)
    return os.waitstatus_to_exitcode(status), text


def test_ctrl_c_at_the_password_prompt(sqlite_config: Path) -> None:
    code, screen = _run_on_a_terminal(
        [NCAUTH, "verify", "--config", str(sqlite_config), population.A], b"\x03", b"Password: "
    )
    assert code == cli.EX_INTERRUPTED == 130, screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    assert screen.rstrip("\n").splitlines()[-1] == "ncauth verify: interrupted"


def test_database_down_prints_one_verdict(tmp_path: Path) -> None:
    config = config_file(tmp_path, f'database_url = "{DOWN_URL}"')
    code, out, err = ncauth("verify", "--config", str(config), population.A, stdin="x\n")
    assert code == cli.EX_TEMPFAIL and out == ""
    verdicts = [line for line in err.splitlines() if line.split()[:1] == ["verdict"]]
    assert len(verdicts) == 1 and "TEMPFAIL: database: OperationalError" in verdicts[0], err
    assert "Connection refused" in verdicts[0] and "pw@" not in err


# -- database drivers and files ---------------------------------------------------------

HIDE_PSYCOPG = "import sys; sys.modules['psycopg'] = None; from ncauth.cli import main; sys.exit(main())"


def _absent(module: str) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")


@pytest.mark.parametrize(
    ("url", "module", "fix"),
    [
        ("mysql://nc:pw@db/nextcloud", "MySQLdb", "write it as mysql+pymysql://…"),
        ("mariadb://nc:pw@db/nextcloud", "MySQLdb", "write it as mysql+pymysql://…"),
        (
            "postgresql+psycopg2://nc:pw@db/nextcloud",
            "psycopg2",
            "write it as postgresql+psycopg://… and install its driver: pip install 'ncauth[postgresql]'",
        ),
    ],
)
def test_missing_driver_is_a_config_error(tmp_path: Path, url: str, module: str, fix: str) -> None:
    """What Nextcloud's dbtype suggests (``mysql://``) needs a driver ncauth does not
    bring: said once, as a config error, before the password is asked; in checkpassword
    a config error in Dovecot's log; ``serve`` does not start."""
    _absent(module)
    config = config_file(
        tmp_path, f'database_url = "{url}"', EXAMPLE + f'[daemon]\nsocket = "{tmp_path}/s"\n'
    )
    expected = f"its driver module {module!r} is not installed; {fix}"
    code, _, err = ncauth("verify", "--config", str(config), population.A, stdin="x\n")
    assert code == cli.EX_CONFIG, err
    assert err.splitlines()[-1].startswith("ncauth verify: [nextcloud] database_url '")
    assert expected in err and ":***@db" in err and "pw@" not in err
    assert not [line for line in err.splitlines() if line.split()[:1] == ["password"]], "asked for it"
    code, _, err = ncauth("serve", "--config", str(config))
    assert code == cli.EX_CONFIG and expected in one_line(err)
    plain = config_file(tmp_path, f'database_url = "{url}"', name="plain.toml")  # no daemon to relay to
    r = checkpassword(plain, request(population.A, population.P))
    assert r.code == 111 and "config error: [nextcloud] database_url" in r.stderr and expected in r.stderr
    assert "Traceback" not in r.stderr


def test_reload_into_a_missing_driver_keeps_the_running_configuration(
    nextcloud_sqlite: NextcloudDB, tmp_path: Path
) -> None:
    """SIGHUP with ``mysql://`` written into the config: refused at once, logins go on."""
    _absent("MySQLdb")
    config, sock = daemon_config(nextcloud_sqlite, tmp_path)
    d = Daemon(config, sock)
    try:
        config.write_text(config.read_text().replace(nextcloud_sqlite.url, "mysql://nc@db/nextcloud"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("reload failed, keeping the running configuration")
        assert "its driver module 'MySQLdb' is not installed; write it as mysql+pymysql://" in d.log()
        assert d.ask("AUTH", population.A, population.P).verdict == "OK"
    finally:
        assert d.stop() == 0


def test_missing_psycopg_names_the_extra(tmp_path: Path) -> None:
    """psycopg is the postgresql extra, not a dependency: its absence (here: made so for
    this one process) names the install command."""
    config = config_file(tmp_path, 'database_url = "postgresql+psycopg://nc@db/nextcloud"')
    proc = leakcheck.run(
        [sys.executable, "-c", HIDE_PSYCOPG, "verify", "--config", str(config), population.A], input="x"
    )
    assert proc.returncode == cli.EX_CONFIG, proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(
        "its driver module 'psycopg' is not installed: "
        "pip install 'ncauth[postgresql]' (Debian: apt install python3-psycopg)"
    )


def test_missing_sqlite_file_is_a_config_error_and_stays_missing(tmp_path: Path) -> None:
    db = tmp_path / "data" / "nextcloud.db"
    (tmp_path / "data").mkdir()
    config = config_file(
        tmp_path, f'database_url = "sqlite:///{db}"', EXAMPLE + f'[daemon]\nsocket = "{tmp_path}/s"\n'
    )
    expected = f"{db} does not exist (ncauth opens Nextcloud's SQLite database read-only and never creates it"
    code, _, err = ncauth("verify", "--config", str(config), population.A, stdin="x\n")
    assert code == cli.EX_CONFIG and expected in err.splitlines()[-1], err
    code, _, err = ncauth("users", "--config", str(config))
    assert code == cli.EX_CONFIG and expected in one_line(err)
    code, _, err = ncauth("serve", "--config", str(config))
    assert code == cli.EX_CONFIG and expected in one_line(err)
    plain = config_file(tmp_path, f'database_url = "sqlite:///{db}"', name="plain.toml")
    r = checkpassword(plain, request(population.A, population.P))
    assert r.code == 111 and "config error:" in r.stderr and expected in r.stderr
    assert not db.exists()


@pytest.mark.parametrize("relative", ["nextcloud.db", "data/nextcloud.db", "./nextcloud.db"])
def test_a_relative_sqlite_path_is_a_config_error(nextcloud_sqlite: NextcloudDB, relative: str) -> None:
    """Each process would read a relative path from its own working directory (Dovecot's
    auth process, the daemon's, the admin's shell): one config, possibly three databases.
    Refused even where the file exists in the directory the command runs in."""
    directory = nextcloud_sqlite.directory
    (directory / "data").mkdir(exist_ok=True)
    shutil.copy(directory / "nextcloud.db", directory / "data" / "nextcloud.db")
    config = config_file(directory, f'database_url = "sqlite:///{relative}"', name="relative.toml")
    expected = (
        f"{relative!r} is a relative path, which each process would read from its own working directory"
    )
    proc = leakcheck.run(
        [NCAUTH, "verify", "--config", str(config), population.A], input="x\n", cwd=str(directory)
    )
    assert proc.returncode == cli.EX_CONFIG and expected in proc.stderr.splitlines()[-1], proc.stderr
    r = checkpassword(config, request(population.A, population.P))
    assert r.code == 111 and "config error:" in r.stderr and expected in r.stderr, r.stderr


def test_sqlite_is_opened_read_only(tmp_path: Path) -> None:
    """ncauth cannot write Nextcloud's SQLite database, even by a bug of its own (and the
    file: URI it opens it by keeps a path with a space and a '#' intact)."""
    import sqlalchemy as sa

    directory = tmp_path / "data dir #1"
    directory.mkdir()
    db = NextcloudDB(f"sqlite:///{directory / 'nextcloud.db'}", "oc_", directory).populate()
    db.close()
    config = load(str(db.write_config(population.STANDARD_CONFIG)))
    engine = store.make_engine(config.nextcloud.database_urls[0], config.nextcloud)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM oc_users")).scalar()
            with pytest.raises(sa.exc.OperationalError, match="readonly database"):
                conn.execute(sa.text("DELETE FROM oc_users"))
    finally:
        engine.dispose()
    assert sorted(p.name for p in directory.iterdir()) == ["ncauth.toml", "nextcloud.db"]


# -- checkpassword by hand ---------------------------------------------------------------


@pytest.mark.parametrize("argv", [[str(PROGRAM)], [NCAUTH, "checkpassword"]])
@pytest.mark.parametrize("option", ["--help", "-h"])
def test_checkpassword_help(argv: list[str], option: str) -> None:
    proc = leakcheck.run([*argv, option])
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: ncauth-checkpassword")
    assert "Dovecot runs it" in proc.stdout.replace("\n", " ") and "ncauth verify USER" in proc.stdout


def test_checkpassword_version() -> None:
    from ncauth import __version__

    proc = leakcheck.run([str(PROGRAM), "--version"])
    assert (proc.returncode, proc.stdout) == (0, f"ncauth-checkpassword {__version__}\n")


def test_checkpassword_run_by_hand(tmp_path: Path) -> None:
    """No fd 3: a person typed it. The hint, and 111 (still "temporary failure")."""
    proc = leakcheck.run([str(PROGRAM), "--config", str(tmp_path / "c.toml")])
    assert proc.returncode == 111 and proc.stdout == ""
    assert one_line(proc.stderr).startswith(
        "ncauth-checkpassword: file descriptor 3 is not open: Dovecot runs"
    )
    assert "run: ncauth verify USER" in proc.stderr and "Bad file descriptor" not in proc.stderr


def test_checkpassword_under_dovecot_ignores_help(tmp_path: Path) -> None:
    """With fd 3 open, --help never answers 0 ("authenticated"): the protocol runs."""
    r = checkpassword(
        tmp_path / "absent.toml",
        request(population.A, population.P),
        argv=[str(PROGRAM), "--help", "--config", str(tmp_path / "absent.toml"), REPLY_HELPER],
    )
    assert (r.code, r.reply) == (111, b"") and "no such file" in r.stderr and "usage" not in r.stderr


@pytest.mark.parametrize(
    ("version", "form", "install"),
    [
        ("2.1.9", "postgresql+psycopg", "python3-psycopg)"),
        ("1.4.46", "postgresql+psycopg2", "python3-psycopg2 "),
    ],
)
def test_the_postgresql_form_named_is_one_this_sqlalchemy_has(
    monkeypatch: pytest.MonkeyPatch, version: str, form: str, install: str
) -> None:
    """Debian 12's SQLAlchemy 1.4 has no psycopg 3 dialect: telling its users to write
    postgresql+psycopg:// would trade one config error for another."""
    import sqlalchemy as sa

    from ncauth import store

    monkeypatch.setattr(sa, "__version__", version)
    url = sa.engine.make_url("postgresql+pg8000://nc:pw@db/nextcloud")
    text = store._missing_driver(url, str(url), ImportError("no", name="pg8000"))
    assert f"write it as {form}://…" in text and install in text, text
