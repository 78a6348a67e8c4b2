"""Regression tests from a fourth review (branch review4): each pins a bug found in the
day's performance work on checkpassword's login path (the one-shot store, ``--socket``),
through real parts where the bug shows in them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dbservers, leakcheck, population
from support.checkpassword import PROGRAM, checkpassword, expected_reply, request
from support.daemon import Daemon, daemon_config
from support.nextcloud import NextcloudDB
from support.population import A, P
from support.require import unavailable

from ncauth import config as config_mod
from ncauth import oneshot
from ncauth.config import NextcloudSection

NCAUTH = str(Path(sys.executable).parent / "ncauth")
#: checkpassword as the generated Dovecot snippet runs it, up to the config's path
ARGV = [str(PROGRAM), "--config"]

SECTION = NextcloudSection(database_urls=("sqlite:////unused.db",))


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://nc:pw@db/next%63loud",
        "mysql+pymysql://nc:pw@db/nc%5Fold",
        "sqlite:////var/lib/nextcloud/data%2Fold/owncloud.db",
        "sqlite+pysqlite:///relative/nc%20data/nc.db",
        "sqlite:////srv/nc%00/owncloud.db",
    ],
)
def test_a_percent_in_the_database_name_is_left_to_sqlalchemy(url: str) -> None:
    """oneshot unquoted the database part of the URL as SQLAlchemy 2.1 does, but Debian's
    SQLAlchemy (1.4 on Debian 12, 2.0 on Debian 13: the versions the .deb runs with) reads
    it literally: ``/nc%5Fold`` was database ``nc_old`` for checkpassword and ``nc%5Fold``
    for the daemon, ``ncauth verify`` and ``ncauth doctor``, so a login could be decided
    against another database than every tool showed. Such a URL now goes to SQLAlchemy's
    store, which reads it as the version installed reads it everywhere else."""
    assert oneshot.target(url, SECTION) is None
    assert oneshot.unsupported(SECTION._replace(database_urls=(url,)))


class TlsMariaDB(dbservers.LocalMariaDB):
    """A private mariadbd that refuses TCP clients without TLS (``require_secure_transport``),
    with a self-signed certificate: what MariaDB 11.4+ does out of the box, half of it."""

    def _initialise(self) -> None:
        super()._initialise()
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(self.tmpdir / "key.pem"),
                "-out",
                str(self.tmpdir / "cert.pem"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            f"--ssl-cert={self.tmpdir / 'cert.pem'}",
            f"--ssl-key={self.tmpdir / 'key.pem'}",
            "--require-secure-transport=ON",
        ]


@pytest.fixture(scope="module")
def tls_mariadb() -> Iterator[dbservers.Server]:
    try:
        server = TlsMariaDB()
        server.start()
    except dbservers.DatabaseUnavailable as exc:
        unavailable(f"no MariaDB: {exc}")
    with server:
        yield server


def test_a_server_that_requires_tls_gets_it_from_checkpassword_too(
    tls_mariadb: dbservers.Server, tmp_path: Path
) -> None:
    """PyMySQL (2.2 on PyPI) asks a server for TLS when it offers it, unless its ``ssl``
    import failed; oneshot blocked that import to save start-up time. So checkpassword's own
    decisions went over plain TCP (hashes and logins readable on the wire) where the daemon
    and ``ncauth verify`` used TLS, and against a server that requires TLS every login was a
    temporary failure while ``ncauth verify`` and ``ncauth doctor`` found nothing wrong."""
    db = NextcloudDB(tls_mariadb.create_database("nc_review4_tls"), "oc_", tmp_path).populate()
    try:
        config = db.write_config(population.STANDARD_CONFIG)
        assert not oneshot.unsupported(config_mod.load(config).nextcloud)  # the one-shot store decides
        verify = leakcheck.run([NCAUTH, "verify", "--config", str(config), A], input=P + "\n")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        r = checkpassword(config, request(A, P))
        assert (r.code, r.reply) == (0, expected_reply(A)), r.stderr
    finally:
        db.close()


def test_a_stale_socket_argument_does_not_skip_the_configured_daemon(
    nextcloud_sqlite: NextcloudDB, tmp_path: Path
) -> None:
    """The Dovecot snippet's ``--socket`` is written once; when ``[daemon] socket`` moves
    and the snippet is not regenerated, nobody answers at the old path. checkpassword then
    read the config and decided in-process (``forward = "auto"``) although the configured
    daemon was there and answering: every login skipped its failure throttle (README: "A
    daemon that is there decides"), and a throttled account logged in. Now the config's own
    daemon is asked before anything is decided in-process."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "throttle_user_failures = 1\n")
    daemon = Daemon(config, sock)
    try:
        env = {"TCPREMOTEIP": "192.0.2.7"}
        wrong = checkpassword(
            config, request(A, "wrong"), env, argv=[*ARGV, str(config), "--socket", str(sock)]
        )
        assert wrong.code == 1, wrong.stderr
        throttled = checkpassword(
            config, request(A, P), env, argv=[*ARGV, str(config), "--socket", str(sock)]
        )
        assert throttled.code == 111, throttled.stderr
        stale = str(tmp_path / "old" / "auth.sock")
        r = checkpassword(config, request(A, P), env, argv=[*ARGV, str(config), "--socket", stale])
        assert (r.code, r.reply) == (111, b""), r.stderr
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    "socket_path", ["/run/ncauth#1/auth.sock", "/run/ncauth/auth.sock\\n  driver = static"]
)
def test_the_socket_dovecot_reads_is_the_socket_ncauth_wrote(tmp_path: Path, socket_path: str) -> None:
    """Dovecot's config parser cuts an unquoted value at ``#`` (a comment), and a line break
    ends it, so ``--socket /run/ncauth#1/auth.sock`` reached checkpassword as ``--socket
    /run/ncauth`` (and a line break wrote Dovecot settings of its own). ``ncauth
    dovecot-config`` now refuses what checkpassword's args cannot carry; whatever it
    writes, real ``doveconf`` reads back unchanged."""
    doveconf = shutil.which("doveconf")
    if doveconf is None:
        unavailable("no doveconf (Dovecot 2.3)")
    config = tmp_path / "ncauth.toml"
    config.write_text(
        f'{population.config_text("sqlite:////unused.db", "oc_")}{population.STANDARD_CONFIG}'
        f'[daemon]\nsocket = "{socket_path}"\n'
    )
    config.chmod(0o600)
    made = subprocess.run(
        [NCAUTH, "dovecot-config", "--config", str(config), "--mode", "checkpassword"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if made.returncode != 0:
        assert "cannot carry" in made.stderr, made.stderr
        return
    written = sorted(line.strip() for line in made.stdout.splitlines() if line.strip().startswith("args ="))
    snippet = tmp_path / "dovecot.conf"
    snippet.write_text(made.stdout)
    read = subprocess.run([doveconf, "-c", str(snippet), "-n"], capture_output=True, text=True, timeout=60)
    assert (
        sorted(line.strip() for line in read.stdout.splitlines() if line.strip().startswith("args ="))
        == written
    )


def test_a_uri_form_sqlite_url_cannot_undo_read_only(tmp_path: Path) -> None:
    """A URI-form SQLite URL gets ``mode=ro`` added to its query, but SQLAlchemy 2.1
    unquotes the database part, so ``file:…new.db%3Fmode%3Drwc%26x%3D?uri=true`` carried a
    query of its own: ``mode=rwc&x=?mode=ro`` opened read-write and created an empty
    database where Nextcloud's was missing, the very thing read-only opening is there to
    prevent. A URI whose path part holds a query or fragment is now a config error."""
    target = tmp_path / "new.db"
    config = tmp_path / "ncauth.toml"
    config.write_text(
        population.config_text(f"sqlite:///file:{target}%3Fmode%3Drwc%26x%3D?uri=true", "oc_")
        + population.STANDARD_CONFIG
    )
    config.chmod(0o600)
    verify = leakcheck.run([NCAUTH, "verify", "--config", str(config), A], input=P + "\n")
    assert not target.exists(), "opened read-write: a new database was created"
    assert verify.returncode == 78, verify.stdout + verify.stderr
