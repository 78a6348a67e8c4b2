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

from ncauth.errors import TemporaryFailure
from ncauth.protocol import HELLO, MAX_LINE, Reply, Request, is_hello


class DaemonUnavailable(TemporaryFailure):
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
    """:func:`ask` with the request's fields as they stand on the wire (user, password,
    ``key=value`` ...)."""
    return ask(path, Request.from_fields([command, "1", *args]), connect_timeout, reply_timeout)


def ask(path: str, req: Request, connect_timeout: float = 0.5, reply_timeout: float = 10.0) -> Answer:
    """Send *req* after the handshake; one answer.

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
                sock.sendall(HELLO + req.encode())
            except (ConnectionResetError, BrokenPipeError):
                pass  # it may have refused us with a line first: read what is there
            buf, problem = _read_lines(sock, 2, deadline)
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if not buf and problem == _CLOSED:
        raise DaemonUnavailable(f"{path}: connection closed before any answer")
    lines = buf.split(b"\n")
    refusal = Reply.parse(lines[0]) if buf else None
    if refusal is not None and refusal.verdict == "TEMPFAIL":  # refused before the handshake
        return Answer("TEMPFAIL", refusal.fields)
    if problem or not is_hello(lines[0]):
        return _tempfail(path, problem or "unexpected handshake")
    answer = Reply.parse(lines[1])
    if answer is None or answer.rid != req.rid:
        return _tempfail(path, "unexpected answer")
    return Answer(answer.verdict, answer.fields)


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
