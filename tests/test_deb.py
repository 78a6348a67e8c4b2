"""The .deb, from nothing to an IMAP login and back to nothing, on clean Debian 12 and 13.

The package is built from the checkout (``dpkg-buildpackage`` in a copy), installed with
``apt-get install ./ncauth_*.deb`` into a clean minbase chroot of each release (cached with
Dovecot and the Debian packages ncauth depends on already in it; apt still checks the .deb's
Depends against them), set up as an admin would (``/etc/ncauth/ncauth.toml`` root:dovecot 0640,
the snippet from the installed ``ncauth dovecot-config``), and logged into over IMAP with
Nextcloud-made hashes in a real SQLite file: Dovecot 2.3 with checkpassword on Debian 12, Dovecot
2.4 with the Lua passdb and the daemon, started from the installed units, on Debian 13. Then
``apt-get remove`` keeps the admin's config and ``apt-get purge`` leaves nothing of the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import population
from support.daemon import Daemon
from support.debchroot import (
    BOOKWORM_PACKAGES,
    NCAUTH_DEPENDS,
    ChrootError,
    chroot_unavailable,
    debian_env,
    debian_root,
    enter_argv,
)
from support.debpkg import BUILD_TOOLS, build_deb
from support.dovecot24 import ChrootDovecot, Dovecot24, trixie_root
from support.dovecot_harness import Dovecot, DovecotError, dovecot_tmpdir
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB
from support.population import CASES
from support.require import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.dovecot]

ROOT = Path(__file__).resolve().parent.parent
UNIT_DIR = "/lib/systemd/system"  # where debhelper on Debian 12 puts units (/usr/lib on 13 is the same dir)
#: logins through the installed package: every hash family, an app password (cryptography),
#: a refusal and an unknown user
LOGINS = (
    "argon2id",
    "argon2i",
    "bcrypt",
    "legacy-sha1",
    "legacy-bcrypt-salted",
    "app-password",
    "wrong-password",
    "disabled",
    "unknown-user",
)


class ChrootDovecot23(ChrootDovecot):
    """Debian 12's Dovecot 2.3 from its chroot, with the host harness's 2.3 config."""

    CONFIG_TEMPLATE = Dovecot.CONFIG_TEMPLATE


@pytest.fixture(scope="module")
def deb() -> Path:
    reason = chroot_unavailable()
    missing = [t for t in BUILD_TOOLS if not shutil.which(t, path=debian_env()["PATH"])]
    if reason or missing:
        unavailable(reason or f"missing {', '.join(missing)} (.ci/apt-packages installs them)")
    try:
        return build_deb(ROOT)
    except (ChrootError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"cannot build the .deb: {exc}")


def _chroot(suite: str) -> Path:
    try:
        return debian_root("bookworm", BOOKWORM_PACKAGES) if suite == "bookworm" else trixie_root()
    except (ChrootError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"no Debian {suite} chroot: {exc}")


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """*argv* (a command entering a chroot) with Debian's environment and no stdin; its
    output handed to the leak check, its exit status to the caller."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=debian_env(), stdin=subprocess.DEVNULL
    )
    record_output(proc.stdout, proc.stderr)
    return proc


class Machine:
    """One clean Debian (an overlay on the cached chroot in ``root``) that commands change in turn."""

    def __init__(self, chroot: Path, root: Path) -> None:
        self.chroot, self.root = chroot, root
        self.dovecot_cls = (
            ChrootDovecot23 if (chroot / "etc/debian_version").read_text()[:2] == "12" else Dovecot24
        )

    def sh(self, script: str, *, check: bool = True) -> str:
        """Run ``script`` as root in the machine, in a namespace of its own on the overlay and
        binds a Dovecot of ``dovecot_cls`` on ``root`` uses: what it installs, Dovecot then sees."""
        proc = _run(
            enter_argv(
                self.chroot, self.root / ChrootDovecot.OVERLAY, [self.root], ["/bin/sh", "-euc", script]
            ),
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{script!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout


@pytest.fixture(params=["bookworm", "trixie"])
def machine(request: pytest.FixtureRequest, deb: Path) -> Iterator[Machine]:
    chroot = _chroot(request.param)
    root = dovecot_tmpdir("ncauth-deb-")
    shutil.copy(deb, root)
    try:
        yield Machine(chroot, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_depends_are_debians_own_python_packages(deb: Path) -> None:
    """No pip, no venv: every dependency is a Debian package, the Python ones python3-*."""
    depends = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    names = {re.split(r"[\s(]", d.strip())[0] for d in depends.split(",")}
    assert names == {*NCAUTH_DEPENDS, "python3:any"} - {"python3"}
    control = (ROOT / "debian" / "control").read_text()
    for name in NCAUTH_DEPENDS:  # what the chroots pre-install is what debian/control names
        assert name == "python3" or re.search(rf"^\s+{re.escape(name)}\b", control, re.M), name


def test_man_page_has_every_command(deb: Path) -> None:
    """ncauth(1) is built from the parser's own help: one section per subcommand, each
    with its options (a command whose help the build could not read would be missed)."""
    import argparse
    import gzip

    from ncauth.cli import _parser

    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    page = subprocess.run(
        ["tar", "-xO", "./usr/share/man/man1/ncauth.1.gz"], input=tar, capture_output=True, check=True
    ).stdout
    text = gzip.decompress(page).decode()
    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in subparsers.choices:
        assert f".SS {name}\n.nf\nusage: ncauth" in text, name  # the usage line: its help was read


def _config(machine: Machine, daemon: bool) -> str:
    """A Nextcloud SQLite database of the standard users in the work dir, and an ncauth config for
    it, as the admin writes it (TOML text, to be installed at /etc/ncauth/ncauth.toml)."""
    db = NextcloudDB(f"sqlite:///{machine.root / 'nextcloud.db'}", "oc_", machine.root).populate()
    db.close()
    (machine.root / "nextcloud.db").chmod(0o644)  # user dovecot reads it (checkpassword)
    daemon_section = '\n[daemon]\nsocket = "/run/ncauth/auth.sock"\nthrottle = false\n' if daemon else ""
    accounts = population.STANDARD_CONFIG.split("[userdb]")[0]
    userdb = f'[userdb]\nuid = "nobody"\ngid = "nogroup"\nhome = "{machine.root}/mail/{{domain}}/{{local}}"\n'
    return population.config_text(db.url, "oc_") + accounts + userdb + daemon_section


def _logins(dovecot: ChrootDovecot) -> None:
    by_id = {c.id: c for c in CASES}
    for name in LOGINS:
        case = by_id.get(name) or population.Case(
            name, f"nobody-here@{population.DOMAIN}", "x", "unknown", ""
        )
        status, text = dovecot.imap_login(case.login, case.password)
        assert status == ("OK" if case.outcome == "ok" else "NO"), (
            name,
            status,
            text,
            dovecot.log_text()[-3000:],
        )


def _doctor(dovecot: ChrootDovecot, daemon: bool) -> None:
    """The installed ``ncauth doctor``, where Dovecot runs, finds the set-up whole: Dovecot's
    own running config (2.3: checkpassword; 2.4: Lua), the daemon's socket and answers, a
    lookup through Dovecot's path and ``doveadm user``; and it finds an unknown user out."""
    user = f"alice@{population.DOMAIN}"
    base = ["/usr/bin/ncauth", "doctor", "--config", "/etc/ncauth/ncauth.toml"]
    base += ["--dovecot-config", str(dovecot.conf_path)]
    found = {}
    for login in (user, f"nobody-here@{population.DOMAIN}"):
        proc = _run(dovecot.nsenter_argv([*base, "--user", login]), timeout=120)
        found[login] = (proc.returncode, proc.stdout.splitlines())
    code, lines = found[user]
    text = "\n".join(lines)
    assert code == 0 and not [ln for ln in lines if ln.startswith("FAIL")], text
    wanted = ["OK   config", f"OK   lookup {user}", f"OK   doveadm user {user}"]
    wanted += ["OK   daemon", "OK   socket /run/ncauth/auth.sock"] if daemon else []
    for start in wanted:
        assert [ln for ln in lines if ln.startswith(start)], (start, text)
    mode = "lua" if daemon else "checkpassword"
    assert [ln for ln in lines if ln.startswith("OK   dovecot 2.") and f"passdb in {mode} mode" in ln], text
    code, lines = found[f"nobody-here@{population.DOMAIN}"]
    assert code == 1 and [ln for ln in lines if ln.startswith("FAIL lookup nobody-here@")], lines


def test_install_login_remove_purge(machine: Machine) -> None:
    lua = machine.dovecot_cls is Dovecot24
    deb = next(machine.root.glob("ncauth_*_all.deb"))
    # --- install: apt resolves the Depends against the clean system ---
    out = machine.sh(f"apt-get install -y --no-install-recommends {deb} 2>&1")
    assert "Setting up ncauth" in out, out
    listed = [p for p in machine.sh("dpkg -L ncauth").split() if p != "/."]
    facts = machine.sh(
        "dpkg-query -W -f '${Status}\\n' ncauth; getent passwd ncauth; stat -c '%a %U:%G' /etc/ncauth; "
        "ncauth --version; "
        f"grep -h '^ExecStart=\\|^Documentation=\\|^ListenStream=' {UNIT_DIR}/ncauth.service {UNIT_DIR}/ncauth.socket"
    ).splitlines()
    assert facts[0] == "install ok installed"
    assert facts[1].startswith("ncauth:x:") and facts[1].endswith(":/nonexistent:/usr/sbin/nologin"), facts[1]
    assert facts[2] == "755 root:root"
    assert facts[3].startswith("ncauth ")
    units = facts[4:]
    assert "ExecStart=/usr/bin/ncauth serve --config /etc/ncauth/ncauth.toml" in units, units
    assert "/opt/ncauth" not in " ".join(units)
    # Documentation= names what exists: the man page and the README, uncompressed
    docs = {d for u in units if u.startswith("Documentation=") for d in u.split("=", 1)[1].split()}
    assert docs == {"man:ncauth(1)", "file:///usr/share/doc/ncauth/README.md"}, docs
    assert machine.sh(
        "man -w ncauth 2>/dev/null || ls /usr/share/man/man1/ncauth.1.gz; test -s /usr/share/doc/ncauth/README.md && echo ok"
    ).split() == ["/usr/share/man/man1/ncauth.1.gz", "ok"]
    for path in (
        "/usr/bin/ncauth",
        "/usr/bin/ncauth-checkpassword",
        "/usr/share/ncauth/ncauth.lua",
        "/usr/share/doc/ncauth/examples/dovecot-snippets/ncauth.toml.example",
        "/etc/fail2ban/filter.d/ncauth.conf",
        f"{UNIT_DIR}/ncauth.service",
    ):
        assert path in listed, path
    assert machine.sh("grep -rl /opt/ncauth /usr/share/doc/ncauth/examples || true") == ""

    # --- set up as the admin does, with the installed programs ---
    (machine.root / "ncauth.toml").write_text(_config(machine, daemon=lua))
    mode = "lua" if lua else "checkpassword"
    snippet = machine.sh(
        f"install -m 0640 -o root -g dovecot {machine.root}/ncauth.toml /etc/ncauth/ncauth.toml\n"
        f"ncauth dovecot-config --config /etc/ncauth/ncauth.toml --mode {mode} "
        f"--output /etc/dovecot/conf.d/ncauth.conf.ext --postfix-socket {machine.root}/postfix-auth "
        "--postfix-user root --postfix-group root 2>/dev/null\n"
        "cat /etc/dovecot/conf.d/ncauth.conf.ext"
    )
    if lua:
        assert "lua_file = /etc/dovecot/conf.d/ncauth.lua" in snippet, snippet
    else:
        assert "args = /usr/bin/ncauth-checkpassword --config /etc/ncauth/ncauth.toml" in snippet, snippet
    dovecot = machine.dovecot_cls(
        machine.root, "!include /etc/dovecot/conf.d/ncauth.conf.ext\n", chroot=machine.chroot
    )
    try:
        dovecot.start()
    except DovecotError as exc:
        pytest.fail(str(exc))
    daemon = None
    try:
        if lua:
            # what systemctl start ncauth.socket would do: the units' socket, user and ExecStart
            shutil.copy(ROOT / "tests" / "support" / "unit_launcher.py", machine.root)
            assert dovecot.proc is not None
            daemon = Daemon(
                machine.root / "ncauth.toml",
                Path(f"/proc/{dovecot.proc.pid}/root/run/ncauth/auth.sock"),
                argv=dovecot.nsenter_argv(["/usr/bin/python3", f"{machine.root}/unit_launcher.py", UNIT_DIR]),
            )
        _logins(dovecot)
        _doctor(dovecot, daemon=lua)
    finally:
        if daemon is not None:
            assert daemon.stop() == 0, daemon.log()
        dovecot.stop()
    # the verdicts came from the installed ncauth: the daemon's log, or checkpassword's lines in Dovecot's
    log = daemon.log() if daemon is not None else dovecot.log_text()
    record_output(log)
    assert (
        f"verdict=ok login=\"alice@{population.DOMAIN}\"" in log
        and ("via=daemon" if lua else "via=checkpassword") in log
    ), log[-3000:]

    # --- remove: the programs go, the admin's config and the user stay ---
    machine.sh("apt-get remove -y ncauth")
    left = machine.sh(
        "dpkg-query -W -f '${Status}\\n' ncauth; test -e /usr/bin/ncauth && echo program-left || true; "
        "ls /etc/ncauth; getent passwd ncauth >/dev/null && echo user-kept"
    ).splitlines()
    assert left == ["deinstall ok config-files", "ncauth.toml", "user-kept"], left

    # --- purge: nothing of the package is left ---
    machine.sh("apt-get purge -y ncauth")
    leftovers = machine.sh(
        "dpkg-query -W ncauth 2>/dev/null && echo still-known || true\n"
        "getent passwd ncauth && echo user-left || true\n"
        "getent group ncauth && echo group-left || true\n"
        "test -e /etc/ncauth && echo etc-ncauth-left || true\n"
        # a path of the package's list that remains must be a directory another package owns
        "for p in " + " ".join(listed) + "; do\n"
        "  if [ -e \"$p\" ] || [ -L \"$p\" ]; then\n"
        "    if [ -d \"$p\" ] && dpkg -S \"$(readlink -f \"$p\")\" >/dev/null 2>&1; then continue; fi\n"
        "    echo \"left: $p\"\n"
        "  fi\n"
        "done\n"
    )
    assert leftovers == "", leftovers
