"""A real Dovecot wired up the way an admin would: ncauth's config with least-privilege
database users made from ``ncauth sql``, the snippet from ``ncauth dovecot-config`` of a
virtualenv Dovecot can run (``make_dovecot_venv``), and the daemon where the mode needs it.
Used by tests/test_dovecot.py and bench/run.py."""

from __future__ import annotations

import grp
import os
import secrets
import subprocess
from pathlib import Path

from . import population
from .daemon import Daemon
from .dbservers import Server
from .dovecot24 import Dovecot24
from .dovecot_harness import Dovecot, dovecot_tmpdir
from .leakcheck import record_output, register_secret


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


def ncauth(venv: Path, *args: str) -> str:
    """The venv's ``ncauth`` with *args*; its output goes to the leak check."""
    proc = subprocess.run([str(venv / "bin" / "ncauth"), *args], capture_output=True, text=True, timeout=60)
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _db_user(mariadb: Server, url: str, venv: Path, config: Path, which: str, name: str) -> str:
    """Create the least-privilege user *name* that ``ncauth sql`` prints for *which* and
    return a URL for it: the tests then run with exactly the generated grants."""
    password = register_secret("e2e-" + secrets.token_hex(12))
    mariadb.execute(f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")
    sql = ncauth(venv, "sql", "--config", str(config), "--host", "127.0.0.1", f"--{which}-user", name)
    section = sql.split(f"({name}):\n", 1)[1].split("\n\n", 1)[0]
    code = "\n".join(
        line.split("--", 1)[0] for line in section.replace("'CHANGE-ME'", f"'{password}'").splitlines()
    )
    statements = [s.strip() for s in code.split(";") if s.strip()]
    assert len(statements) == len(section.splitlines())  # one statement a line, none lost
    for statement in statements:
        mariadb.execute(statement)
    host, port = mariadb.url("x").split("@", 1)[1].split("/", 1)[0].split(":")
    return f"mysql+pymysql://{name}:{password}@{host}:{port}/{url.rsplit('/', 1)[1]}"


def start(
    mode: str,
    version: str,
    daemon: bool,
    mariadb: Server,
    url: str,
    prefix: str,
    venv: Path,
    *,
    userdb_extra: str = "",
    root: Path | None = None,
    accounts_extra: str = "",
    ncauth_extra: str = "",
    extra_config: str = "",
    postfix_socket: Path | None = None,
    postfix_owner: str = "root",
) -> tuple[E2EDovecot23 | E2EDovecot24, Daemon | None]:
    """A started Dovecot *version* (2.3 or 2.4) in *mode* (checkpassword, sql, lua) on the
    Nextcloud database at *url*, and the daemon when *daemon* is set. *userdb_extra*:
    more ``[userdb]`` lines (TOML), e.g. a quota field.

    For a real Postfix in front: *accounts_extra* adds keys to ``[accounts]``,
    *ncauth_extra* whole sections (``[postfix]``) to ncauth's config, *extra_config* goes
    to dovecot.conf (an LMTP listener), and the SASL listener is made at *postfix_socket*
    for user and group *postfix_owner*."""
    root = root or dovecot_tmpdir()
    config = root / "ncauth.toml"
    userdb = f'\n[userdb]\nuid = "nobody"\ngid = "nogroup"\nhome = "{root}/mail/{{domain}}/{{local}}"\n'
    userdb += userdb_extra
    accounts = population.STANDARD_CONFIG.split("[userdb]")[0] + accounts_extra
    sock = root / "ncauth.sock"
    # the case table fails on purpose from one address: no failure throttling here
    daemon_section = (
        f'\n[daemon]\nsocket = "{sock}"\nsocket_group = "dovecot"\nthrottle = false\n' if daemon else ""
    ) + ncauth_extra
    config.write_text(population.config_text(url, prefix) + accounts + userdb)
    config.chmod(0o600)
    which = "dovecot" if mode == "sql" else "ncauth"
    user_url = _db_user(mariadb, url, venv, config, which, f"e2e_{mode}_{version.replace('.', '')}")
    config.write_text(population.config_text(user_url, prefix) + accounts + userdb + daemon_section)
    os.chown(config, 0, grp.getgrnam("dovecot").gr_gid)
    config.chmod(0o640)
    server = (
        Daemon(config, sock, argv=[str(venv / "bin" / "ncauth"), "serve", "--config", str(config)])
        if daemon
        else None
    )
    snippet = root / "ncauth.conf.ext"
    ncauth(
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
        str(postfix_socket or root / "postfix-auth"),
        "--postfix-user",
        postfix_owner,
        "--postfix-group",
        postfix_owner,
    )
    cls = E2EDovecot23 if version == "2.3" else E2EDovecot24
    dovecot = cls(root, snippet.read_text(), extra_config=extra_config)
    dovecot.postfix_socket = postfix_socket or root / "postfix-auth"
    dovecot.mode = mode
    return dovecot.start(), server
