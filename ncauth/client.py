"""A blocking client for the daemon's socket, for checkpassword and ``ncauth status``.

Standard library only: on this path ``ncauth-checkpassword`` must not pay for
SQLAlchemy or argon2 imports. Every wait is bounded. Only a daemon that is not there
raises DaemonUnavailable (the caller may then decide in-process); anything that is not a
well-formed answer from a daemon that is there is a TEMPFAIL answer, never a verdict.
"""

from __future__ import annotations

import socket
import time
from typing import NamedTuple

from ncauth.protocol import (
    MAX_LINE,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    VERDICTS,
    decode_line,
    encode_line,
    key_values,
)


class DaemonUnavailable(Exception):
    """Nobody serves the socket: it is missing, refuses connections, or the connection
    closed before a single byte came back (a daemon shutting down). Only then may the
    caller decide by itself."""


class Answer(NamedTuple):
    verdict: str  # OK | FAIL | UNKNOWN | TEMPFAIL
    fields: dict[str, str]
    #: False when the client made up this TEMPFAIL (timeout, garbage): nobody logged it yet
    from_daemon: bool = True


def request(
    path: str, command: str, *args: str, connect_timeout: float = 0.5, reply_timeout: float = 10.0
) -> Answer:
    """Send one request (``AUTH``, ``LOOKUP``, ``STATS``) after the handshake; one answer.

    A daemon that accepted the request is in charge of it: when it is busy, refuses the
    connection by a TEMPFAIL line (too many connections), runs out of time or answers
    garbage, the answer is TEMPFAIL, never DaemonUnavailable, because deciding elsewhere
    would skip the daemon's failure throttle."""
    deadline = time.monotonic() + connect_timeout + reply_timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:  # no socket, or nobody listening
            raise DaemonUnavailable(f"{path}: {exc.strerror or exc}") from None
        except OSError as exc:  # e.g. EAGAIN: a full listen backlog is a daemon that is there
            return _tempfail(path, exc.strerror or str(exc))
        buf, problem = b"", ""
        try:
            try:
                sock.sendall(
                    encode_line("VERSION", str(PROTOCOL_MAJOR), str(PROTOCOL_MINOR))
                    + encode_line(command, "1", *args)
                )
            except (ConnectionResetError, BrokenPipeError):
                pass  # it may have refused us with a line first: read what is there
            buf, problem = _read_lines(sock, 2, deadline)
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if not buf and problem == _CLOSED:
        raise DaemonUnavailable(f"{path}: connection closed before any answer")
    lines = buf.split(b"\n")
    first = decode_line(lines[0]) if buf else []
    if first[:1] == ["TEMPFAIL"]:  # refused before the handshake, e.g. too many connections
        return Answer("TEMPFAIL", key_values(first[2:]))
    if problem or first[:2] != ["VERSION", str(PROTOCOL_MAJOR)]:
        return _tempfail(path, problem or "unexpected handshake")
    answer = decode_line(lines[1])
    if len(answer) < 2 or answer[0] not in VERDICTS or answer[1] != "1":
        return _tempfail(path, "unexpected answer")
    return Answer(answer[0], key_values(answer[2:]))


def _tempfail(path: str, why: str) -> Answer:
    """A TEMPFAIL this client made up (nobody has logged it yet)."""
    return Answer("TEMPFAIL", {"reason": f"daemon at {path}: {why}"}, False)


_CLOSED = "connection closed before the answer"


def _read_lines(sock: socket.socket, count: int, deadline: float) -> tuple[bytes, str]:
    """(what arrived, "" or why it is not *count* whole lines)."""
    buf = b""
    while buf.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return buf, "no answer in time"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return buf, "no answer in time"
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            # a refusal line before the handshake is a whole answer on its own
            return buf, "" if buf.startswith(b"TEMPFAIL") and buf.endswith(b"\n") else _CLOSED
        buf += chunk
        if len(buf) > count * MAX_LINE:
            return buf, "answer too long"
    return buf, ""
