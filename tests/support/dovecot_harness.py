"""Run a real Dovecot 2.3 (Debian 12 package) in the foreground and drive logins through it.

Why this exists: the checkpassword protocol, the Lua passdb and the generated SQL passdb are only
proven when a real Dovecot calls them, as the user it really runs them as (``dovecot``), with the
limits it really sets (no PATH, 256 MiB address space). This module builds a private instance from
a temp dir (ports, sockets, log, mail all private), includes the passdb/userdb text under test with
``!include`` exactly as an admin would include a generated snippet, and offers the clients a mail
system really has: an IMAP client, ``doveadm auth …``, and Postfix's SASL client on the auth socket.

Facts it relies on: Dovecot 2.3 runs as root from a temp dir with its own base_dir and
state_dir (``dovecot -F -c FILE``), and Postfix's ``src/xsasl/xsasl_dovecot_server.c`` says what
Postfix sends on ``private/auth``.

Usage::

    reason = dovecot_available()
    if reason: pytest.skip(reason)            # or fail under CI
    root = dovecot_tmpdir()                   # 0755 dir under /tmp that user dovecot can reach
    auth = ("passdb {\\n driver = checkpassword\\n args = /x/bin/ncauth-checkpassword\\n}\\n"
            "userdb {\\n driver = static\\n args = uid=nobody gid=nogroup allow_all_users=yes\\n}")
    with Dovecot(root, auth) as dc:
        assert dc.imap_login("alice", "pw")[0] == "OK"
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "DOVEADM_BIN",
    "DOVECOT_BIN",
    "SYSTEM_PYTHON",
    "Dovecot",
    "DovecotBase",
    "DovecotError",
    "dovecot_available",
    "dovecot_tmpdir",
    "make_dovecot_venv",
]

DOVECOT_BIN = "/usr/sbin/dovecot"
DOVEADM_BIN = "/usr/bin/doveadm"
#: Debian's interpreter: user ``dovecot`` can execute it, unlike a pyenv interpreter under /root.
SYSTEM_PYTHON = "/usr/bin/python3"
#: Postfix's AUTH_TIMEOUT is 10 s; ours is longer because argon2 in a cold bridge can be slow.
DEFAULT_TIMEOUT = 30.0


class DovecotError(RuntimeError):
    """Dovecot could not be started, stopped or queried; the message carries the log tail."""


# --------------------------------------------------------------------------------------------
# availability and directories
# --------------------------------------------------------------------------------------------


def dovecot_available() -> str | None:
    """Return None when a real Dovecot 2.3 can be run here, else the reason it cannot.

    Tests skip on the reason (or fail when ``CI``/``NCAUTH_REQUIRE_DB`` demands it) instead of
    erroring in the middle of a fixture.
    """
    for binary in (DOVECOT_BIN, DOVEADM_BIN):
        if not os.access(binary, os.X_OK):
            return f"{binary} not found (apt-get install dovecot-core dovecot-imapd)"
    if os.geteuid() != 0:
        return "Dovecot end-to-end tests must run as root (dovecot -F drops privileges itself)"
    for user in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} missing (the dovecot-core package creates it)"
    try:
        out = subprocess.run(
            [DOVECOT_BIN, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{DOVECOT_BIN} --version failed: {exc}"
    if not out.startswith("2.3."):
        return f"Dovecot {out or '?'} found; this harness writes a Dovecot 2.3 configuration"
    return None


def _traversable_by_others(path: Path) -> bool:
    """True if every directory from / down to path has the o+x bit (user dovecot can reach it)."""
    path = path.resolve()
    for p in (path, *path.parents):
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            return False
    return True


def dovecot_tmpdir(prefix: str = "ncauth-dovecot-", parent: str | Path = "/tmp") -> Path:
    """Create a fresh mode-0755 directory under /tmp.

    pytest's ``tmp_path`` lives below ``/tmp/pytest-of-root`` (mode 0700), which users ``dovecot``
    and ``dovenull`` cannot traverse; Dovecot's login chroot, the checkpassword program and its
    config must all be reachable by them. The caller removes it (``shutil.rmtree``).
    """
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=str(parent)))
    d.chmod(0o755)
    return d


def _free_port() -> int:
    """An unused TCP port on 127.0.0.1 (bind to 0; the tiny race is acceptable for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# the Dovecot instance
# --------------------------------------------------------------------------------------------

#: The part of the base config that Dovecot 2.3 and 2.4 spell alike: an IMAP listener on a
#: free port, no auth penalty, the stand-in for Postfix's socket and the snippet under test.
SERVICES_CONFIG = """\
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
# the per-IP auth penalty would delay later logins by 2-15 s after failures
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
# stand-in for Postfix's /var/spool/postfix/private/auth
service auth {{
  unix_listener auth-smtp {{
    mode = 0666
  }}
}}
{extra_config}
!include {auth_file}
"""

_BASE_CONFIG = (
    """\
# ncauth test instance, generated by tests/support/dovecot_harness.py (research §7.1)
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
auth_debug = {auth_debug}
mail_location = maildir:{root}/mail/%u
"""
    + SERVICES_CONFIG
)


class DovecotBase:
    """One private Dovecot master (``dovecot -F``) rooted in a temp dir: lifecycle, logs, clients.

    Shared by the 2.3 :class:`Dovecot` (host binaries) and ``dovecot24.Dovecot24`` (a Debian 13
    chroot), so both versions are driven by the very same IMAP, doveadm and SASL code. A subclass
    gives the base config (``CONFIG_TEMPLATE``) and says how to run ``dovecot`` and ``doveadm``.

    ``auth_config`` is the passdb/userdb text under test; it is written to ``auth.conf.ext`` and
    pulled in with ``!include`` (the way ``ncauth dovecot-config`` output is meant to be used).
    ``extra_config`` is placed before that include and after the base settings, so it may override
    base settings (e.g. ``auth_cache_size = 1M`` or ``service auth { vsz_limit = 1G }``).

    ``workdir`` must be traversable by users dovecot/dovenull (see :func:`dovecot_tmpdir`); if it
    is not, a fresh 0755 directory under /tmp is used instead (``self.root``) and removed on stop.
    """

    #: the base config; str.format placeholders are the keys of :meth:`_config_values`
    CONFIG_TEMPLATE: str

    def __init__(
        self,
        workdir: Path,
        auth_config: str,
        *,
        extra_config: str = "",
        auth_debug: bool = True,
        start_timeout: float = 20.0,
    ) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self._own_root = False
        if _traversable_by_others(workdir):
            self.root = workdir.resolve()
        else:
            self.root = dovecot_tmpdir()
            self._own_root = True
        self.auth_config = auth_config
        self.extra_config = extra_config
        self.auth_debug = auth_debug
        self.start_timeout = start_timeout
        self.imap_port = 0
        self.conf_path = self.root / "dovecot.conf"
        self.auth_file = self.root / "auth.conf.ext"
        self.log_path = self.root / "dovecot.log"
        self.stdout_path = self.root / "master.out"  # fd 1 of children under -F (research §1.4)
        self.base_dir = self.root / "run"
        self.mail_dir = self.root / "mail"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._finalizer = weakref.finalize(self, lambda: None)

    def _dovecot_argv(self, args: Sequence[str]) -> list[str]:
        """The command line that runs this version's ``dovecot`` with ``args``."""
        raise NotImplementedError

    def _doveadm_argv(self, args: Sequence[str]) -> list[str]:
        """The command line that runs ``doveadm -c <conf>`` with ``args`` against this instance."""
        raise NotImplementedError

    def _config_values(self) -> dict[str, object]:
        """The placeholders of ``CONFIG_TEMPLATE``."""
        return {
            "root": self.root,
            "auth_debug": "yes" if self.auth_debug else "no",
            "imap_port": self.imap_port,
            "extra_config": self.extra_config.strip(),
            "auth_file": self.auth_file,
        }

    # ---- paths ------------------------------------------------------------------------------
    @property
    def auth_smtp_socket(self) -> Path:
        """The socket Postfix would use (``smtpd_sasl_path``)."""
        return self.base_dir / "auth-smtp"

    # ---- lifecycle --------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Write dovecot.conf and the included auth snippet; return the config path."""
        if not self.imap_port:
            self.imap_port = _free_port()
        for d in (self.root / "state", self.mail_dir):
            d.mkdir(exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "state").chmod(0o755)
        # the imap process runs as the userdb uid (nobody in tests) and creates the maildir
        self.mail_dir.chmod(0o1777)
        self.auth_file.write_text(
            self.auth_config if self.auth_config.endswith("\n") else self.auth_config + "\n"
        )
        self.auth_file.chmod(0o644)
        self.conf_path.write_text(self.CONFIG_TEMPLATE.format(**self._config_values()))
        self.conf_path.chmod(0o644)
        return self.conf_path

    def start(self) -> Self:
        """Start ``dovecot -F -c conf`` and wait until IMAP greets and the auth socket exists.

        Raises DovecotError with the log tail when Dovecot exits or is not ready in time.
        """
        if self.proc is not None:
            raise DovecotError("already started")
        self.write_config()
        check = subprocess.run(
            self._dovecot_argv(["-n", "-c", str(self.conf_path)]),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise DovecotError(f"invalid config {self.conf_path}:\n{check.stderr.strip()}")
        t0 = time.monotonic()
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                self._dovecot_argv(["-F", "-c", str(self.conf_path)]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(self.root),
            )
        # if the test process exits without stop() (crash, ^C), don't leave a Dovecot behind
        self._finalizer = weakref.finalize(self, _kill_pgid, self.proc.pid)
        deadline = t0 + self.start_timeout
        last_err = "not tried"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise DovecotError(f"dovecot exited with status {rc} during start-up\n" + self._diagnostics())
            fatal = [ln for ln in self.log_text().splitlines() if ": Fatal: " in ln or "startup failed" in ln]
            if fatal:
                # e.g. "auth: Fatal: Unknown passdb driver 'x'": the master would only keep
                # restarting the service with growing throttles, so fail now
                self._kill()
                self.proc = None
                raise DovecotError(f"dovecot failed during start-up: {fatal[0]}\n" + self._diagnostics())
            if self.auth_smtp_socket.exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.imap_port), timeout=2) as s:
                        greeting = s.recv(1024)
                    if greeting.startswith(b"* OK"):
                        self.start_seconds = time.monotonic() - t0
                        return self
                    last_err = f"greeting {greeting!r}"
                except OSError as exc:
                    last_err = str(exc)
            time.sleep(0.05)
        self._kill()
        raise DovecotError(
            f"dovecot not ready after {self.start_timeout:.0f} s ({last_err})\n" + self._diagnostics()
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the master (SIGTERM, as ``doveadm stop`` does) and wait for it.

        On timeout the whole process group is killed; a lingering child is killed too.
        """
        if self.proc is None:
            return
        t0 = time.monotonic()
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._kill()
        finally:
            self.stop_seconds = time.monotonic() - t0
            self._reap_group()
            self._finalizer.detach()
            self.proc = None
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def _kill(self) -> None:
        """SIGKILL the whole process group we started (master + its children)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._finalizer.detach()

    def _reap_group(self) -> None:
        """Children that outlive the master (e.g. a hung checkpassword child) stay in the process
        group we created; give them a moment, then SIGKILL that group only. Zombies (the master's
        children are re-parented to init and may be reaped late) do not count."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        deadline = time.monotonic() + 2.0
        killed = False
        while _live_group_members(pgid):
            if time.monotonic() > deadline:
                if killed:
                    return
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 2.0
            time.sleep(0.05)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- logs -------------------------------------------------------------------------------
    def log_text(self) -> str:
        """Everything Dovecot logged so far (auth_verbose/auth_debug lines, child stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        """Current log size, so a test can look only at what one login logged: log_since(mark)."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int) -> str:
        with contextlib.suppress(FileNotFoundError), open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")
        return ""

    def wait_for_log(self, needle: str, timeout: float = 5.0, since: int = 0) -> str:
        """Wait until ``needle`` appears in the log (the log process writes asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in Dovecot log:\n{text[-3000:]}")
            time.sleep(0.05)

    def _diagnostics(self, lines: int = 40) -> str:
        parts = []
        for title, path in (("dovecot.log", self.log_path), ("master stdout/stderr", self.stdout_path)):
            with contextlib.suppress(FileNotFoundError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                if tail:
                    parts.append(f"--- {title} ({path}) ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no log output)"

    # ---- clients ----------------------------------------------------------------------------
    def imap_login(
        self, user: str, password: str, *, timeout: float = DEFAULT_TIMEOUT, mech: str = "login"
    ) -> tuple[str, str]:
        """Log in over IMAP like a mail client; return ("OK"|"NO"|"BAD"|"BYE", server text).

        The text keeps the response code, e.g. ``[AUTHENTICATIONFAILED] Authentication failed.``
        or ``[UNAVAILABLE] Temporary authentication failure.`` ``mech="plain"`` uses
        AUTHENTICATE PLAIN (UTF-8), which also carries non-ASCII passwords that LOGIN cannot.
        """
        try:
            conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=timeout)
        except OSError as exc:
            return "BYE", f"connect failed: {exc}"
        try:
            try:
                if mech == "login":
                    # imaplib's login() leaves the user unquoted; quote both like mail clients do.
                    # A non-ASCII password goes as a literal ({n} + UTF-8 bytes), as clients do.
                    if password.isascii():
                        typ, data = conn._simple_command("LOGIN", conn._quote(user), conn._quote(password))
                    else:
                        conn.literal = password.encode()  # type: ignore[assignment]
                        typ, data = conn._simple_command("LOGIN", conn._quote(user))
                elif mech == "plain":
                    blob = b"\0" + user.encode() + b"\0" + password.encode()
                    typ, data = conn._simple_command("AUTHENTICATE", "PLAIN", base64.b64encode(blob).decode())
                else:
                    raise ValueError(f"mech must be 'login' or 'plain', not {mech!r}")
            except imaplib.IMAP4.abort as exc:
                return "BYE", _text(exc.args[0] if exc.args else exc)
            except imaplib.IMAP4.error as exc:
                # imaplib raises for a tagged BAD: "<CMD> command error: BAD [b'text']"
                return "BAD", _text(exc.args[0] if exc.args else exc)
            except OSError as exc:  # includes socket timeouts
                return "BYE", f"connection error: {exc}"
            text = " ".join(_text(d) for d in data if d is not None)
            if typ == "OK":
                conn.state = "AUTH"
                with contextlib.suppress(Exception):
                    conn.logout()
            return typ, text
        finally:
            with contextlib.suppress(Exception):
                conn.shutdown()

    def imap_inbox(self, user: str, password: str, *, timeout: float = DEFAULT_TIMEOUT) -> list[bytes]:
        """Log in over IMAP and return every message of INBOX (``BODY.PEEK[]``, in order):
        how a test sees that mail was delivered to *user*'s mailbox, as the user would.
        Raises DovecotError when the login or a command fails."""
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=timeout)
        try:
            typ, data = conn._simple_command("LOGIN", conn._quote(user), conn._quote(password))
            if typ != "OK":
                raise DovecotError(f"IMAP LOGIN for {user!r}: {typ} {data!r}")
            conn.state = "AUTH"
            typ, data = conn.select("INBOX", readonly=True)
            if typ != "OK":
                raise DovecotError(f"SELECT INBOX: {typ} {data!r}")
            if int(_text(data[0])) == 0:
                return []
            typ, data = conn.fetch("1:*", "(BODY.PEEK[])")
            if typ != "OK":
                raise DovecotError(f"FETCH: {typ} {data!r}")
            return [part[1] for part in data if isinstance(part, tuple)]
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def _doveadm(self, args: Sequence[str], timeout: float) -> tuple[int, str]:
        r = subprocess.run(
            self._doveadm_argv(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        return r.returncode, (r.stdout + r.stderr).strip()

    def doveadm(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """Any ``doveadm`` command against this instance (e.g. ``mailbox list -A``):
        exit code and output."""
        return self._doveadm(args, timeout)

    def auth_test(
        self,
        user: str,
        password: str,
        *,
        service: str = "imap",
        rip: str | None = None,
        extra: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple[int, str]:
        """``doveadm auth test`` (SASL PLAIN on auth-client, passdb only): 0 ok, 77 failed
        (a temporary failure is 77 with ``code=temp_fail`` in the output on 2.3.19)."""
        args = ["auth", "test", "-x", f"service={service}"]
        if rip is not None:
            args += ["-x", f"rip={rip}"]
        for e in extra:
            args += ["-x", e]
        return self._doveadm([*args, user, password], timeout)

    def auth_lookup(self, user: str, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """``doveadm auth lookup`` (passdb lookup without password): 0 found, 67 unknown."""
        return self._doveadm(["auth", "lookup", user], timeout)

    def user_lookup(self, user: str, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """``doveadm user`` (userdb lookup, as LMTP/LDA would do): 0 found, 67 unknown;
        with a wildcard (``*``) the userdb's iteration, one name a line."""
        return self._doveadm(["user", user], timeout)

    def quota_get(self, user: str, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """``doveadm quota get -u user``: the quota plugin's usage and limits (STORAGE in KiB)."""
        return self._doveadm(["quota", "get", "-u", user], timeout)

    def auth_cache_flush(
        self, user: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[int, str]:
        """``doveadm auth cache flush [user]``."""
        return self._doveadm(["auth", "cache", "flush", *([user] if user else [])], timeout)

    def sasl_plain(
        self,
        user: str,
        password: str,
        *,
        service: str = "smtp",
        rip: str = "192.0.2.10",
        lip: str = "127.0.0.1",
        secured: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple[str, dict[str, str]]:
        """Authenticate on the auth-smtp socket exactly as Postfix's smtpd does.

        Wire format (Postfix src/xsasl/xsasl_dovecot_server.c): send ``VERSION\\t1\\t0`` and
        ``CPID\\t<pid>``, read VERSION/MECH/SPID/CUID/COOKIE until ``DONE``, then send
        ``AUTH\\t<id>\\tPLAIN\\tservice=smtp\\tnologin\\tlip=…\\trip=…[\\tsecured]\\tresp=<b64>``.
        Returns ("OK"|"FAIL"|"CONT", fields); bare flags map to "" and values are tab-unescaped,
        e.g. ("FAIL", {"user": "down", "code": "temp_fail"}).
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.auth_smtp_socket))
            f = s.makefile("rwb", buffering=0)
            f.write(f"VERSION\t1\t0\nCPID\t{os.getpid()}\n".encode())
            mechs: list[str] = []
            while True:
                line = f.readline()
                if not line:
                    raise DovecotError("auth server closed the connection during handshake")
                parts = line.rstrip(b"\n").decode().split("\t")
                if parts[0] == "VERSION" and parts[1] != "1":
                    raise DovecotError(f"auth protocol major version {parts[1]} != 1")
                if parts[0] == "MECH":
                    mechs.append(parts[1])
                if parts[0] == "DONE":
                    break
            if "PLAIN" not in mechs:
                raise DovecotError(f"auth server offers no PLAIN mechanism: {mechs}")
            resp = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
            req = f"AUTH\t1\tPLAIN\tservice={service}\tnologin\tlip={lip}\trip={rip}"
            if secured:
                req += "\tsecured"
            f.write(f"{req}\tresp={resp}\n".encode())
            while True:
                line = f.readline()
                if not line:
                    raise DovecotError("auth server closed the connection before replying")
                parts = line.rstrip(b"\n").decode(errors="replace").split("\t")
                if parts[0] in ("OK", "FAIL", "CONT") and len(parts) > 1 and parts[1] == "1":
                    fields: dict[str, str] = {}
                    for item in parts[2:]:
                        if not item:  # Dovecot ends OK lines with a TAB
                            continue
                        key, sep, value = item.partition("=")
                        fields[key] = _tabunescape(value) if sep else ""
                    return parts[0], fields


class Dovecot(DovecotBase):
    """A private Dovecot 2.3 (the host's Debian 12 package), configured as research §7.1 says."""

    CONFIG_TEMPLATE = _BASE_CONFIG

    def _dovecot_argv(self, args: Sequence[str]) -> list[str]:
        return [DOVECOT_BIN, *args]

    def _doveadm_argv(self, args: Sequence[str]) -> list[str]:
        return [DOVEADM_BIN, "-c", str(self.conf_path), *args]


def _kill_pgid(pgid: int) -> None:
    """SIGKILL a process group we started (used at interpreter exit)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (from /proc/<pid>/stat)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _text(x: object) -> str:
    return x.decode(errors="replace") if isinstance(x, (bytes, bytearray)) else str(x)


def _tabunescape(value: str) -> str:
    """Undo Dovecot's tab-escaping (src/lib/strescape.c): \\x01 + 1/t/r/n."""
    if "\x01" not in value:
        return value
    table = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\x01" and i + 1 < len(value):
            out.append(table.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# a virtualenv that user dovecot can execute
# --------------------------------------------------------------------------------------------

_VENV_MEMO: dict[tuple[str, str], Path] = {}
_SKIP_PARTS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", "build", "dist"}


def _source_key(project_root: Path, package_dirs: Sequence[str]) -> str:
    """Hash of what decides the installed result: build metadata plus the package's files."""
    h = hashlib.sha256()
    h.update(b"python=" + os.path.realpath(SYSTEM_PYTHON).encode() + b"\0")
    files: list[Path] = []
    # README.md is package metadata (readme) and installed data (share/doc/ncauth/README.md)
    for name in ("pyproject.toml", "setup.cfg", "setup.py", "ncauth_checkpassword.py", "README.md"):
        if (project_root / name).is_file():
            files.append(project_root / name)
    for d in package_dirs:
        base = project_root / d
        if base.is_dir():
            files += sorted(
                p
                for p in base.rglob("*")
                if p.is_file()
                and not _SKIP_PARTS & set(p.relative_to(base).parts)
                and p.suffix not in (".pyc", ".pyo")
            )
    for p in files:
        h.update(str(p.relative_to(project_root)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def _chmod_readable(tree: Path) -> None:
    """go+rX on the whole venv, whatever the umask was (user dovecot must read and exec it)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in (*dirnames, *filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = st.st_mode | stat.S_IRGRP | stat.S_IROTH
            if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR:
                mode |= stat.S_IXGRP | stat.S_IXOTH
            if mode != st.st_mode:
                os.chmod(p, stat.S_IMODE(mode))
    os.chmod(tree, 0o755)  # noqa: S103 - user dovecot must traverse the test venv


def make_dovecot_venv(
    project_root: Path,
    dest: Path = Path("/var/tmp/ncauth-test-venvs"),
    *,
    package_dirs: Sequence[str] = ("ncauth",),
    extra_requirements: Sequence[str] = (),
    timeout: float = 900.0,
) -> Path:
    """Create (or reuse) a virtualenv from Debian's /usr/bin/python3 with the project installed.

    Why: Dovecot 2.3 runs the checkpassword program as user ``dovecot`` with no PATH; the pyenv
    interpreter under /root is unreachable for it, and so is an editable install pointing into a
    source tree under /root. So the venv is made from /usr/bin/python3, in ``dest`` (every
    directory 0755 from /), and the project is installed non-editable (``pip install <root>``).

    ``dest`` is a cache directory: the venv is ``dest/venv-<key>`` where key hashes
    pyproject.toml/setup.* and every file under ``package_dirs``; an unchanged source reuses the
    venv (also across pytest sessions). Builds run under an flock on ``dest/.lock`` and are
    marked complete only at the end, so parallel workers never use half a venv. pip builds from a
    copy of the tree, so no ``build/`` or ``*.egg-info`` lands in the checkout. Returns the venv
    path; its scripts are in ``<venv>/bin``.
    """
    project_root = Path(project_root).resolve()
    dest = Path(dest)
    key = _source_key(project_root, package_dirs) + (
        "-" + hashlib.sha256("\0".join(extra_requirements).encode()).hexdigest()[:8]
        if extra_requirements
        else ""
    )
    memo_key = (str(project_root), key)
    venv = dest / f"venv-{key}"
    if memo_key in _VENV_MEMO and (venv / ".complete").exists():
        return _VENV_MEMO[memo_key]
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    if not _traversable_by_others(dest):
        raise DovecotError(
            f"{dest} is not traversable by other users (need o+x from / down); choose e.g. /var/tmp or /opt"
        )
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            # a venv without the marker is a build that died half-way: start over
            shutil.rmtree(venv, ignore_errors=True)
            env = {
                k: v
                for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER", "PYENV_VERSION")
            }
            env["PATH"] = "/usr/local/bin:/usr/bin:/bin"

            def run(cmd: list[str]) -> None:
                r = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=lambda: os.umask(0o022),
                )
                if r.returncode != 0:
                    raise DovecotError(
                        f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-4000:]}"
                    )

            src_copy = Path(tempfile.mkdtemp(prefix=".src-", dir=str(dest))) / "src"
            try:
                shutil.copytree(project_root, src_copy, symlinks=True, ignore=_copy_ignore)
                # built in place: venv scripts carry the venv's absolute path in their shebang
                run([SYSTEM_PYTHON, "-m", "venv", str(venv)])
                run(
                    [
                        str(venv / "bin" / "python"),
                        "-m",
                        "pip",
                        "install",
                        "--no-input",
                        "--disable-pip-version-check",
                        str(src_copy),
                        *extra_requirements,
                    ]
                )
                _chmod_readable(venv)
                (venv / ".complete").write_text(f"{project_root}\n{key}\n")
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            finally:
                shutil.rmtree(src_copy.parent, ignore_errors=True)
        _prune_old_venvs(dest, keep=venv)
    _VENV_MEMO[memo_key] = venv
    return venv


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    """Leave VCS data, caches, build output and virtualenvs out of the copy pip builds from."""
    return {
        n
        for n in names
        if n in _SKIP_PARTS
        or n.endswith(".egg-info")
        or n in (".venv", "venv", ".tox", ".nox")
        or (Path(directory, n) / "pyvenv.cfg").exists()
    }


def _prune_old_venvs(dest: Path, keep: Path, max_keep: int = 3) -> None:
    """Keep the cache from growing: leave the newest few venvs, remove older ones."""
    venvs = sorted(
        (p for p in dest.glob("venv-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in venvs[max_keep - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
