"""``ncauth serve`` as a real process on a Unix socket, and ways to talk to it: the
client library, raw bytes, and waits on what the daemon logs or counts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ncauth import client
from ncauth.protocol import decode_line, encode_line

from . import population
from .leakcheck import record_output
from .nextcloud import NextcloudDB

NCAUTH = Path(sys.executable).parent / "ncauth"
#: The handshake every connection starts with.
HELLO = encode_line("VERSION", "1", "0")


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Until *condition()* holds (the event a test means), or fail after *timeout*."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


class Daemon:
    """A running ``ncauth serve`` and a few ways to talk to it. It logs to
    ``daemon.log`` beside its config; :meth:`stop` hands the log to the leak check."""

    def __init__(
        self,
        config: Path,
        socket_path: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        argv: list[str] | None = None,
        reply_timeout: float = 30,
    ) -> None:
        self.config, self.socket = config, socket_path
        self.reply_timeout = reply_timeout
        self.log_path = config.parent / "daemon.log"
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv or [str(NCAUTH), "serve", "--config", str(config)],
            stdout=self.log_file,
            stderr=self.log_file,
            env={**os.environ, **(env or {})},
            pass_fds=pass_fds,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start: {self.log()}")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            self.ask("STATS")
            return True
        except client.DaemonUnavailable:
            return False

    def ask(self, command: str, *args: str) -> client.Answer:
        return client.request(
            str(self.socket), command, *args, connect_timeout=1, reply_timeout=self.reply_timeout
        )

    def stats(self) -> dict[str, str]:
        return self.ask("STATS").fields

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, count: int = 1, timeout: float = 10.0) -> None:
        """Until *needle* is in the log *count* times (a reload, a drain, a refusal)."""
        wait_for(lambda: self.log().count(needle) >= count, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.log_file.close()
        record_output(self.log())
        return self.proc.returncode

    def open_fds(self) -> int:
        """Descriptors the daemon holds: a connection it let go of is closed here."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_peak_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


def daemon_config(db: NextcloudDB, directory: Path, extra: str = "") -> tuple[Path, Path]:
    """A daemon config; failure throttling is off unless *extra* configures it (these tests
    fail on purpose, many times, from one client)."""
    sock = directory / "auth.sock"
    config = directory / "ncauth.toml"
    throttle = "" if "throttle" in extra else "throttle = false\n"
    config.write_text(
        population.config_text(db.url, db.prefix)
        + population.STANDARD_CONFIG
        + f'\n[daemon]\nsocket = "{sock}"\n{throttle}{extra}'
    )
    config.chmod(0o600)
    return config, sock


def accounts(config: Path) -> list[str]:
    """What ``Authenticator.accounts()`` lists for *config*: what USERS must answer."""
    from ncauth import config as config_mod
    from ncauth.policy import Authenticator

    auth = Authenticator(config_mod.load(str(config)))
    try:
        return auth.accounts()
    finally:
        auth.store.close()


def raw(sock_path: Path, data: bytes, *, read_lines: int = 2, timeout: float = 10) -> list[list[str]]:
    """Send raw bytes, read *read_lines* answer lines (fewer if the daemon closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(data)
        buf = b""
        while buf.count(b"\n") < read_lines:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [decode_line(line) for line in buf.split(b"\n")[:-1]]
