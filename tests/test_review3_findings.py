"""Regression tests from a third review (branch review3): each pins a bug found in the
day's work (``ncauth demo``, ``ncauth doctor``, the error-handling pass), through the
real programs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import leakcheck, population
from support.checkpassword import REPLY_HELPER, checkpassword, request
from support.dbservers import Server
from support.nextcloud import NextcloudDB, database_url

NCAUTH = str(Path(sys.executable).parent / "ncauth")


def test_demo_imports_nothing_from_the_working_directory(tmp_path: Path) -> None:
    """``ncauth demo`` ran ``python -m ncauth verify``, and ``-m`` puts the working
    directory first on sys.path: run from a directory another user can write (/tmp, a
    web root), it imported and ran that user's ``ncauth`` package as the admin."""
    planted = tmp_path / "ncauth"
    planted.mkdir()
    marker = tmp_path / "planted-code-ran"
    for name in ("__init__.py", "__main__.py"):
        (planted / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = leakcheck.run([NCAUTH, "demo"], cwd=str(tmp_path), timeout=180)
    assert not marker.exists(), "the demo ran code from its working directory"
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_at_sign_in_the_database_password_shows_none_of_it(tmp_path: Path) -> None:
    """A password with an unescaped '@' (``nc:Pa@Leak9tail@host``): SQLAlchemy's grammar
    ends the password at the first '@' and takes ``Leak9tail@127.0.0.1`` for the host,
    so the redacted URL in traces, Dovecot's log and ``ncauth doctor`` showed the rest of
    the password, and the connection error named it again. Now a config error that says
    to percent-encode, with no part of the password in any output."""
    tail = leakcheck.register_secret("Leak9tail")
    config = tmp_path / "ncauth.toml"
    config.write_text(
        f'[nextcloud]\ndatabase_url = "mysql+pymysql://nc:Pa@{tail}@127.0.0.1:1/nextcloud"\n'
        f'[accounts]\ndomains = ["{population.DOMAIN}"]\n'
    )
    config.chmod(0o600)
    verify = leakcheck.run([NCAUTH, "verify", "--config", str(config), population.A], input="x\n")
    assert verify.returncode == 78, verify.stderr
    assert "percent-encode" in verify.stderr
    doctor = leakcheck.run([NCAUTH, "doctor", "--config", str(config)])
    r = checkpassword(config, request(population.A, population.P))
    assert r.code == 111
    for output in (verify.stdout, verify.stderr, doctor.stdout, doctor.stderr, r.stderr):
        assert tail not in output, output


#: ``ncauth`` with ncauth.checkpassword unloadable (a half-upgraded or shadowed package)
BROKEN = (
    "import sys; sys.modules['ncauth.checkpassword'] = None; from ncauth.cli import main; sys.exit(main())"
)


@pytest.mark.parametrize("where", ["after", "before"])
def test_checkpassword_that_cannot_load_is_a_temporary_failure(tmp_path: Path, where: str) -> None:
    """``ncauth checkpassword`` turns a failed import into 111, but ``ncauth --config FILE
    checkpassword`` (the form the error-handling pass added) imported it unguarded:
    Python's traceback exit 1, which Dovecot reads as "wrong password"."""
    config = str(tmp_path / "ncauth.toml")
    args = (
        ["checkpassword", "--config", config] if where == "after" else ["--config", config, "checkpassword"]
    )
    r = checkpassword(
        config, request(population.A, population.P), argv=[sys.executable, "-c", BROKEN, *args, REPLY_HELPER]
    )
    assert (r.code, r.reply) == (111, b""), r.stderr
    assert "Traceback" not in r.stderr and "temporary failure" in r.stderr


def test_checkpassword_given_two_configs_and_unloadable_is_a_temporary_failure(tmp_path: Path) -> None:
    """The 'two different --config' refusal imported ncauth.checkpassword for its exit
    status: unloadable, that too was a traceback and exit 1."""
    args = ["--config", str(tmp_path / "a.toml"), "checkpassword", "--config", str(tmp_path / "b.toml")]
    r = checkpassword("", request(population.A, population.P), argv=[sys.executable, "-c", BROKEN, *args])
    assert (r.code, r.reply) == (111, b"") and "give one" in r.stderr and "Traceback" not in r.stderr


def test_sqlite_path_with_a_leading_double_slash(nextcloud_sqlite: NextcloudDB) -> None:
    """``sqlite://///srv/nc.db`` (one slash too many) names the file /srv/nc.db, which
    exists; the read-only URI made it ``file://srv/nc.db``, where SQLite reads ``srv`` as
    the URI's authority: every login a temporary failure ("invalid uri authority"), and
    ``//localhost/x/nc.db`` would open /x/nc.db instead of /localhost/x/nc.db."""
    path = str(nextcloud_sqlite.directory / "nextcloud.db")
    nextcloud_sqlite.url = f"sqlite:///{'/' + path}"
    config = nextcloud_sqlite.write_config(population.STANDARD_CONFIG)
    proc = leakcheck.run([NCAUTH, "verify", "--config", str(config), population.A], input=population.P)
    assert proc.returncode == 0, proc.stderr
    r = checkpassword(config, request(population.A, population.P))
    assert r.code == 0 and r.reply.startswith(f"user={population.A}".encode()), r.stderr


#: a table name that, printed raw, ends the doctor's line, forges an OK one and erases it
HOSTILE_TABLE = "oc_evil\nOK   database: all is well\x1b[2K\x1b[1A"


@pytest.mark.slow
def test_doctor_prints_no_control_characters_from_the_database(
    postgres: Server, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The doctor's grant finding names tables as PostgreSQL's catalog spells them, and
    whoever holds Nextcloud's database login (anyone who can read config.php, e.g. the web
    server) may create a table of any name: a newline forged a finding in root's doctor
    run, terminal escapes could hide real ones. Every finding is now one line of
    printable characters, the rest escaped."""
    url = database_url("postgresql", request, tmp_path)
    db = NextcloudDB(url, "oc_", tmp_path).populate()
    try:
        postgres.execute(f'CREATE TABLE "{HOSTILE_TABLE}" (x int)', database=url.rsplit("/", 1)[1])
        config = db.write_config(population.STANDARD_CONFIG)
        proc = leakcheck.run([NCAUTH, "doctor", "--config", str(config)], timeout=120)
    finally:
        db.close()
    assert "oc_evil" in proc.stdout, proc.stdout  # the grant finding names it
    assert "\x1b" not in proc.stdout and "\\x1b[2K" in proc.stdout
    assert not [ln for ln in proc.stdout.splitlines() if ln.startswith("OK   database: all is well")]
