"""A blocking client for the daemon's socket, for checkpassword and ``ncauth status``.

Standard library only: on this path ``ncauth-checkpassword`` must not pay for
SQLAlchemy or argon2 imports. Every wait is bounded; anything that is not a
well-formed answer raises DaemonUnavailable, so the caller can fall back or
temp-fail, never mistake it for a verdict.
"""

from __future__ import annotations

import socket
import time
from typing import NamedTuple

from ncauth.protocol import MAX_LINE, PROTOCOL_MAJOR, PROTOCOL_MINOR, VERDICTS, decode_line, encode_line, key_values


class DaemonUnavailable(Exception):
    """No usable answer from the daemon (not running, refused, timed out, garbled)."""


class Answer(NamedTuple):
    verdict: str                       # OK | FAIL | UNKNOWN | TEMPFAIL
    fields: dict[str, str]


def request(path: str, command: str, *args: str, connect_timeout: float = 0.5,
            reply_timeout: float = 10.0) -> Answer:
    """Send one request (``AUTH``, ``LOOKUP``, ``STATS``) after the handshake; one answer."""
    deadline = time.monotonic() + connect_timeout + reply_timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.sendall(encode_line("VERSION", str(PROTOCOL_MAJOR), str(PROTOCOL_MINOR))
                         + encode_line(command, "1", *args))
            lines = _read_lines(sock, 2, deadline)
    except OSError as exc:
        raise DaemonUnavailable(f"{path}: {exc.strerror or exc}") from None
    version = decode_line(lines[0])
    if version[:2] != ["VERSION", str(PROTOCOL_MAJOR)]:
        raise DaemonUnavailable(f"{path}: unexpected handshake {lines[0][:40]!r}")
    answer = decode_line(lines[1])
    if len(answer) < 2 or answer[0] not in VERDICTS or answer[1] != "1":
        raise DaemonUnavailable(f"{path}: unexpected answer {lines[1][:40]!r}")
    return Answer(answer[0], key_values(answer[2:]))


def _read_lines(sock: socket.socket, count: int, deadline: float) -> list[bytes]:
    buf = b""
    while buf.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DaemonUnavailable("no answer in time")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise DaemonUnavailable("connection closed before the answer")
        buf += chunk
        if len(buf) > count * MAX_LINE:
            raise DaemonUnavailable("answer too long")
    return buf.split(b"\n")[:count]
