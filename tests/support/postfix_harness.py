"""Run a private Postfix (Debian 12's package, 3.7) from its own config directory, on loopback.

Why this exists: ncauth will answer Postfix's recipient and sender-ownership lookups over the
socketmap protocol; only a real ``smtpd`` shows what a reply turns into on the wire (250, 550,
451), and only a real queue shows that an accepted message is delivered. This module writes a
``main.cf`` and ``master.cf`` into a temp dir and runs ``postfix -c DIR start-fg``: its own
queue, data directory and log file (``maillog_file`` via ``postlogd``), SMTP on a free port of
127.0.0.1, no chroot unless ``chroot=True`` (then as Debian's master.cf), children as user ``postfix`` (``mail_owner``; the master itself must be
root). Nothing of the system's Postfix (``/etc/postfix/main.cf``, the system queue) is used.

The maps are plain strings, so a test plugs in whatever a production main.cf would say:
``texthash:/path``, ``socketmap:unix:/path:recipients`` (ncauth's socket later on, or
:class:`SocketmapServer` here). Mail for ``virtual_mailbox_domains`` goes to
``virtual_transport``, by default an :class:`LmtpSink` (``lmtp:inet:127.0.0.1:PORT``), or a real
Dovecot LMTP. SMTP AUTH uses Dovecot SASL when ``sasl_path`` names a Dovecot auth socket (an
absolute path works because nothing runs chrooted; Postfix daemons otherwise resolve it relative
to ``queue_directory``, where they chdir).

Usage::

    reason = postfix_available()
    if reason: unavailable(reason)
    root = dovecot_tmpdir("ncauth-postfix-")          # 0755: user postfix must reach it
    with LmtpSink() as sink, Postfix(root, recipient_maps="texthash:/x/recipients",
                                      transport=sink.transport) as pf:
        with pf.smtp() as s:
            s.ehlo(); s.mail("a@b.example"); code, _ = s.rcpt("alice@example.org")
        pf.postmap_query("texthash:/x/recipients", "alice@example.org")   # Lookup(...)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import pwd
import re
import signal
import smtplib
import socket
import socketserver
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ncauth.socketmap import Handler, serve_connection

from .dovecot_harness import DovecotBase, _free_port, _kill_pgid, _live_group_members

__all__ = [
    "POSTFIX_BIN",
    "POSTMAP_BIN",
    "Delivery",
    "LmtpSink",
    "Lookup",
    "Postfix",
    "PostfixError",
    "SocketmapServer",
    "parse_main_cf",
    "postfix_available",
    "postfix_version",
]

POSTFIX_BIN = "/usr/sbin/postfix"
POSTMAP_BIN = "/usr/sbin/postmap"
POSTCONF_BIN = "/usr/sbin/postconf"
SMTP_TIMEOUT = 30.0


class PostfixError(RuntimeError):
    """Postfix could not be started or stopped; the message carries the log tail."""


def postfix_version() -> str | None:
    """``mail_version`` of the installed Postfix (``postconf -d``), or None."""
    try:
        out = subprocess.run(
            [POSTCONF_BIN, "-d", "-h", "mail_version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def postfix_available() -> str | None:
    """None when a private Postfix can be run here, else the reason it cannot."""
    for binary in (POSTFIX_BIN, POSTMAP_BIN, POSTCONF_BIN):
        if not os.access(binary, os.X_OK):
            return f"{binary} not found (apt-get install postfix)"
    if os.geteuid() != 0:
        return "the Postfix master must run as root (it drops to mail_owner for its children)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "system user 'postfix' missing (the postfix package creates it)"
    version = postfix_version()
    if version is None or not re.match(r"3\.([4-9]|\d\d)", version):
        # maillog_file/postlogd and start-fg need 3.4 or later
        return f"Postfix {version or '?'} found; this harness needs 3.4 or later"
    return None


def parse_main_cf(text: str) -> dict[str, str]:
    """The settings of ``main.cf`` *text* (as ``ncauth postfix-config`` prints it): comments
    and blank lines skipped, a line that starts with white space continues the one before."""
    settings: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and key:
            settings[key] += " " + line.strip()
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not a main.cf setting: {line!r}")
        key = key.strip()
        settings[key] = value.strip()
    return settings


# --------------------------------------------------------------------------------------------
# the Postfix instance
# --------------------------------------------------------------------------------------------

#: Only the services a receive-and-deliver path uses. ``{c}`` is the chroot column: "n"
#: everywhere by default; with ``chroot=True`` "y" wherever Debian's master.cf says so
#: (smtpd, cleanup, trivial-rewrite, lmtp, ...), while qmgr, proxymap and postlogd stay out.
MASTER_CF = """\
# ncauth test instance, generated by tests/support/postfix_harness.py
127.0.0.1:{smtp_port} inet n - {c} - - smtpd
cleanup   unix  n       -       {c}       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       {c}       -       -       trivial-rewrite
bounce    unix  -       -       {c}       -       0       bounce
defer     unix  -       -       {c}       -       0       bounce
trace     unix  -       -       {c}       -       0       bounce
verify    unix  -       -       {c}       -       1       verify
flush     unix  n       -       {c}       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       {c}       -       -       smtp
relay     unix  -       -       {c}       -       -       smtp
showq     unix  n       -       {c}       -       -       showq
error     unix  -       -       {c}       -       -       error
retry     unix  -       -       {c}       -       -       error
discard   unix  -       -       {c}       -       -       discard
lmtp      unix  -       -       {c}       -       -       lmtp
anvil     unix  -       -       {c}       -       1       anvil
scache    unix  -       -       {c}       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """One private Postfix rooted in *root* (which user ``postfix`` must be able to traverse).

    *recipient_maps* becomes ``virtual_mailbox_maps`` for *domains*; *sender_login_maps*, when
    given, becomes ``smtpd_sender_login_maps`` with ``smtpd_sender_restrictions =
    reject_sender_login_mismatch``; *sasl_path* turns on SMTP AUTH through Dovecot SASL.
    *main* overrides or adds any ``main.cf`` setting last. *chroot* runs the daemons that
    Debian's master.cf chroots inside ``queue_directory``, as a stock Debian Postfix does: a
    socket they use must then be named relative to it (``private/auth``), or be reached
    through proxymap (``proxy:``), which runs outside. The SMTP client of the tests
    (127.0.0.1) is not in ``mynetworks``, so it is treated as a client from the internet.
    """

    def __init__(
        self,
        root: Path,
        *,
        recipient_maps: str,
        transport: str,
        domains: Sequence[str] = ("example.org",),
        sender_login_maps: str | None = None,
        sasl_path: str | None = None,
        main: Mapping[str, str] | None = None,
        chroot: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.config_dir = self.root / "conf"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "maillog"
        self.out_path = self.root / "master.out"
        self.smtp_port = 0
        self.settings: dict[str, str] = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.root),
            "myhostname": "mail.ncauth.test",
            "mydomain": "ncauth.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 local delivery is disabled",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.255.255.254/32",  # not the test client: it is "the internet"
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "virtual_mailbox_domains": " ".join(domains),
            "virtual_mailbox_maps": recipient_maps,
            "virtual_transport": transport,
        }
        if sender_login_maps is not None:
            self.settings["smtpd_sender_login_maps"] = sender_login_maps
            self.settings["smtpd_sender_restrictions"] = "reject_sender_login_mismatch"
        if sasl_path is not None:
            self.settings |= {
                "smtpd_sasl_auth_enable": "yes",
                "smtpd_sasl_type": "dovecot",
                "smtpd_sasl_path": sasl_path,
            }
        self.settings |= dict(main or {})
        self.chroot = chroot
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] = weakref.finalize(self, lambda: None)

    # ---- lifecycle ----------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Write main.cf and master.cf; create the data and queue directories."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)  # master.lock, caches
        if not self.smtp_port:
            self.smtp_port = _free_port()
        main_cf = "".join(f"{key} = {value}\n" for key, value in self.settings.items())
        (self.config_dir / "main.cf").write_text(
            "# generated by tests/support/postfix_harness.py\n" + main_cf
        )
        (self.config_dir / "master.cf").write_text(
            MASTER_CF.format(smtp_port=self.smtp_port, c="y" if self.chroot else "n")
        )
        return self.config_dir

    def start(self) -> Self:
        """``postfix check``, then ``postfix start-fg``; ready when smtpd greets."""
        if self.proc is not None:
            raise PostfixError("already started")
        self.write_config()
        rc, out = self._postfix("check")  # also creates the queue's subdirectories
        if rc != 0:
            raise PostfixError(f"postfix check failed for {self.config_dir}:\n{out}\n" + self._diagnostics())
        t0 = time.monotonic()
        with open(self.out_path, "ab") as out_file:
            self.proc = subprocess.Popen(
                [POSTFIX_BIN, "-c", str(self.config_dir), "start-fg"],
                stdin=subprocess.DEVNULL,
                stdout=out_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(self.root),
                env=_postfix_env(),
            )
        # if the test process dies without stop(), do not leave a Postfix behind
        self._finalizer = weakref.finalize(self, _kill_pgid, self.proc.pid)
        last = "not tried"
        while time.monotonic() < t0 + self.start_timeout:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                self._finalizer.detach()
                raise PostfixError(f"postfix start-fg exited with status {rc}\n" + self._diagnostics())
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=5) as s:
                    greeting = s.recv(512)
                    s.sendall(b"QUIT\r\n")
                if greeting.startswith(b"220 "):
                    return self
                last = f"greeting {greeting!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        self.stop()
        raise PostfixError(
            f"postfix not ready after {self.start_timeout:.0f} s ({last})\n" + self._diagnostics()
        )

    def stop(self, timeout: float = 20.0) -> None:
        """``postfix stop`` and wait for the master; kill our process group if it hangs."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self._postfix("stop")
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
        finally:
            pgid = self.proc.pid
            deadline = time.monotonic() + 5
            while _live_group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)  # children leave after the master
            if _live_group_members(pgid):
                _kill_pgid(pgid)
            self._finalizer.detach()
            self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _postfix(self, command: str) -> tuple[int, str]:
        """Run ``postfix -c DIR command`` with its stderr on a pty: Postfix commands print their
        diagnostics only to a terminal (otherwise only to the log, which a config error may
        prevent them from opening)."""
        return _run_on_pty([POSTFIX_BIN, "-c", str(self.config_dir), command], cwd=self.root)

    # ---- logs ---------------------------------------------------------------------------------
    # the log file helpers of the Dovecot harness work on any object with a ``log_path``
    log_text = DovecotBase.log_text
    log_mark = DovecotBase.log_mark
    log_since = DovecotBase.log_since

    def wait_for_log(self, pattern: str, timeout: float = 10.0, since: int = 0) -> str:
        """Wait until the regular expression *pattern* matches the log since *since*."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in the Postfix log:\n{text[-3000:]}")
            time.sleep(0.05)

    def _diagnostics(self, lines: int = 40) -> str:
        parts = []
        for title, path in (("maillog", self.log_path), ("start-fg output", self.out_path)):
            with contextlib.suppress(FileNotFoundError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                if tail:
                    parts.append(f"--- {title} ({path}) ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no log output)"

    # ---- clients ------------------------------------------------------------------------------
    def smtp(self, timeout: float = SMTP_TIMEOUT) -> smtplib.SMTP:
        """An SMTP client connected to this instance's smtpd (use it as a context manager)."""
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.ncauth.test", timeout=timeout)

    def postmap_query(self, table: str, key: str) -> Lookup:
        """``postmap -q KEY TABLE`` under this instance's main.cf: one process, one lookup."""
        t0 = time.perf_counter()
        proc = subprocess.run(
            [POSTMAP_BIN, "-c", str(self.config_dir), "-q", key, table],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=_postfix_env(),
        )
        return Lookup.from_postmap(proc, time.perf_counter() - t0)

    def postmap_query_many(self, table: str, keys: Sequence[str]) -> tuple[dict[str, str], float]:
        """``postmap -q - TABLE`` with *keys* on stdin: one process (one socketmap connection)
        for all of them, as a running smtpd does. Returns the found ``key: value`` pairs and
        the elapsed seconds; raises PostfixError on a lookup error."""
        t0 = time.perf_counter()
        proc = subprocess.run(
            [POSTMAP_BIN, "-c", str(self.config_dir), "-q", "-", table],
            input="".join(f"{k}\n" for k in keys),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=_postfix_env(),
        )
        seconds = time.perf_counter() - t0
        if "fatal:" in proc.stderr or proc.returncode not in (0, 1):
            raise PostfixError(f"postmap -q - {table} failed:\n{proc.stderr}")
        found = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
        return found, seconds


@dataclass(frozen=True)
class Lookup:
    """One ``postmap -q``: *value* when found, *error* (postmap's stderr) on a lookup error."""

    value: str | None
    error: str | None
    seconds: float

    @property
    def found(self) -> bool:
        return self.value is not None

    @classmethod
    def from_postmap(cls, proc: subprocess.CompletedProcess[str], seconds: float) -> Lookup:
        # postmap(1): exit 0 and the value when found; exit 1 and silence when not found;
        # exit 1 with "fatal: table ...: query error" on a lookup error
        if proc.returncode == 0:
            return cls(proc.stdout.rstrip("\n"), None, seconds)
        if proc.stderr.strip():
            return cls(None, proc.stderr.strip(), seconds)
        return cls(None, None, seconds)


def _postfix_env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def _run_on_pty(argv: list[str], cwd: Path, timeout: float = 60.0) -> tuple[int, str]:
    """Run *argv* with stdout and stderr on a pseudo-terminal; its exit status and output."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=str(cwd), env=_postfix_env()
        )
    finally:
        os.close(follower)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        rc = proc.wait(timeout=timeout)
    finally:
        os.close(leader)
    return rc, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n").strip()


# --------------------------------------------------------------------------------------------
# the other ends: an LMTP sink and a socketmap server
# --------------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One message as the LMTP sink received it."""

    mail_from: str
    recipients: list[str]
    data: bytes = b""


@dataclass
class _SinkState:
    deliveries: list[Delivery] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)


class LmtpSink:
    """A minimal LMTP server (RFC 2033) on 127.0.0.1 that keeps what it is given.

    Enough for Postfix's ``lmtp`` client: LHLO, MAIL, RCPT, DATA with one reply per accepted
    recipient, RSET, NOOP, QUIT. No PIPELINING is advertised, so commands come one by one.
    """

    def __init__(self) -> None:
        self.state = _SinkState()
        state = self.state

        class Session(socketserver.StreamRequestHandler):
            timeout = 60

            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink.ncauth.test LMTP ready")
                current: Delivery | None = None
                while line := self.rfile.readline(4096):
                    command = line.decode(errors="replace").rstrip("\r\n")
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "LHLO":
                        self.reply("250-sink.ncauth.test")
                        self.reply("250 ENHANCEDSTATUSCODES")
                    elif verb == "MAIL":
                        current = Delivery(_address(command), [])
                        self.reply("250 2.1.0 Ok")
                    elif verb == "RCPT" and current is not None:
                        current.recipients.append(_address(command))
                        self.reply("250 2.1.5 Ok")
                    elif verb == "DATA" and current is not None and current.recipients:
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        current.data = self._read_data()
                        with state.changed:
                            state.deliveries.append(current)
                            state.changed.notify_all()
                        for _ in current.recipients:
                            self.reply("250 2.0.0 Ok: delivered")
                        current = None
                    elif verb in ("RSET", "NOOP"):
                        current = None if verb == "RSET" else current
                        self.reply("250 2.0.0 Ok")
                    elif verb == "QUIT":
                        self.reply("221 2.0.0 Bye")
                        return
                    else:
                        self.reply("503 5.5.1 Bad sequence of commands")

            def _read_data(self) -> bytes:
                lines: list[bytes] = []
                while (line := self.rfile.readline(65536)) not in (b".\r\n", b""):
                    lines.append(line[1:] if line.startswith(b"..") else line)
                return b"".join(lines)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Session)
        self.port: int = self.server.server_address[1]
        self.transport = f"lmtp:inet:127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="lmtp-sink", daemon=True)

    @property
    def deliveries(self) -> list[Delivery]:
        with self.state.changed:
            return list(self.state.deliveries)

    def wait_for(self, recipient: str, timeout: float = 30.0) -> Delivery:
        """The first delivery to *recipient*, waiting up to *timeout* seconds for it."""
        deadline = time.monotonic() + timeout
        with self.state.changed:
            while True:
                for d in self.state.deliveries:
                    if recipient in d.recipients:
                        return d
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no delivery to {recipient} within {timeout} s")
                self.state.changed.wait(left)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _address(command: str) -> str:
    """The address between the first ``<`` and ``>`` of a MAIL/RCPT command."""
    match = re.search(r"<([^>]*)>", command)
    return match.group(1) if match else ""


class SocketmapServer:
    """Serve :func:`ncauth.socketmap.serve_connection` with *handler* on a Unix socket, from an
    event loop in a background thread. The socket is mode 0666 so that Postfix's daemons (user
    ``postfix``) can connect; put it in a directory they can traverse."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="socketmap", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def spec(self, name: str) -> str:
        """The Postfix table for socketmap *name* on this server."""
        return f"socketmap:unix:{self.path}:{name}"

    def start(self) -> Self:
        self._thread.start()

        async def listen() -> asyncio.base_events.Server:
            async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                self.connections += 1
                await serve_connection(reader, writer, self.handler)

            server = await asyncio.start_unix_server(connection, path=str(self.path))
            self.path.chmod(0o666)
            return server

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        server = self._server
        if server is not None:

            async def close() -> None:
                server.close()
                # Postfix keeps its connections open (up to 100 s): end them here
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)
                await server.wait_closed()

            with contextlib.suppress(TimeoutError):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
