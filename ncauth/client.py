"""A blocking client for the daemon's socket, for checkpassword and ``ncauth status``.

Standard library only: on this path ``ncauth-checkpassword`` must not pay for
SQLAlchemy or argon2 imports. Every wait is bounded. Only a daemon that is not there
raises DaemonUnavailable (the caller may then decide in-process); anything that is not a
well-formed answer from a daemon that is there is a TEMPFAIL answer, never a verdict.
"""

from __future__ import annotations

import socket
import time

from ncauth.errors import TemporaryFailure
from ncauth.protocol import HELLO, LISTED, MAX_LINE, Listed, Reply, Request, is_hello

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: checkpassword's relay
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ncauth.records import NamedTuple  # typing's, without its start-up cost


#: How long a client waits to connect, and for the answer ([daemon] connect_timeout and
#: reply_timeout default to these; checkpassword's ``--socket`` relay uses them unless told)
CONNECT_TIMEOUT = 0.5
REPLY_TIMEOUT = 10.0


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
    path: str,
    command: str,
    *args: str,
    connect_timeout: float = CONNECT_TIMEOUT,
    reply_timeout: float = REPLY_TIMEOUT,
) -> Answer:
    """:func:`ask` with the request's fields as they stand on the wire (user, password,
    ``key=value`` ...)."""
    return ask(path, Request.from_fields([command, "1", *args]), connect_timeout, reply_timeout)


def ask(
    path: str, req: Request, connect_timeout: float = CONNECT_TIMEOUT, reply_timeout: float = REPLY_TIMEOUT
) -> Answer:
    """Send *req* after the handshake; one answer.

    A daemon that accepted the request is in charge of it: when it is busy, refuses the
    connection by a TEMPFAIL line (too many connections), runs out of time or answers
    garbage, the answer is TEMPFAIL, never DaemonUnavailable, because deciding elsewhere
    would skip the daemon's failure throttle."""
    return _converse(path, req, connect_timeout, reply_timeout)[0]


def users(path: str, connect_timeout: float = CONNECT_TIMEOUT, reply_timeout: float = 60.0) -> list[str]:
    """The daemon's USERS answer: every account it serves, by canonical name. Raises
    TemporaryFailure (DaemonUnavailable when nobody serves *path*) unless the whole list
    arrived, so that a failure never looks like an empty list."""
    answer, names = _converse(path, Request("USERS", "1"), connect_timeout, reply_timeout)
    if answer.verdict != "OK":
        raise TemporaryFailure(answer.fields.get("reason", answer.verdict))
    if answer.fields.get("count") != str(len(names)):
        raise TemporaryFailure(f"daemon at {path}: the list of users is incomplete")
    return names


def _converse(
    path: str, req: Request, connect_timeout: float, reply_timeout: float
) -> tuple[Answer, list[str]]:
    """The answer to *req*, and the names of the Listed lines before it (USERS)."""
    deadline = time.monotonic() + connect_timeout + reply_timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:  # no socket, or nobody listening
            raise DaemonUnavailable(f"{path}: {exc.strerror or exc}") from None
        except OSError as exc:  # e.g. EAGAIN: a full listen backlog is a daemon that is there
            return _tempfail(path, exc.strerror or str(exc)), []
        lines: list[bytes] = []
        problem = ""
        try:
            try:
                sock.sendall(HELLO + req.encode())
            except (ConnectionResetError, BrokenPipeError):
                pass  # it may have refused us with a line first: read what is there
            problem = _read_lines(sock, lines, deadline)
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if not lines and problem == _CLOSED:
        raise DaemonUnavailable(f"{path}: connection closed before any answer")
    refusal = Reply.parse(lines[0]) if lines else None
    if refusal is not None and refusal.verdict == "TEMPFAIL":  # refused before the handshake
        return Answer("TEMPFAIL", refusal.fields), []
    if problem or not is_hello(lines[0]):
        return _tempfail(path, problem or "unexpected handshake"), []
    listed = [Listed.parse(line) for line in lines[1:-1]]
    names = [item.name for item in listed if item is not None and item.rid == req.rid]
    answer = Reply.parse(lines[-1])
    if answer is None or answer.rid != req.rid or len(names) != len(listed):
        return _tempfail(path, "unexpected answer"), []
    return Answer(answer.verdict, answer.fields), names


def _tempfail(path: str, why: str) -> Answer:
    """A TEMPFAIL this client made up (nobody has logged it yet)."""
    return Answer("TEMPFAIL", {"reason": f"daemon at {path}: {why}"}, False)


_CLOSED = "connection closed before the answer"
_LISTED_PREFIX = LISTED.encode() + b"\t"


def _read_lines(sock: socket.socket, lines: list[bytes], deadline: float) -> str:
    """Read into *lines* the handshake and the answer (with the Listed lines before it);
    "" when they are all there, else why not."""
    rest = b""
    while len(lines) < 2 or lines[-1].startswith(_LISTED_PREFIX):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "no answer in time"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return "no answer in time"
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            # a refusal line before the handshake is a whole answer on its own
            return "" if len(lines) == 1 and not rest and lines[0].startswith(b"TEMPFAIL") else _CLOSED
        *complete, rest = (rest + chunk).split(b"\n")
        lines.extend(complete)
        if len(rest) > MAX_LINE or any(len(line) >= MAX_LINE for line in complete):
            return "answer too long"
    return ""
