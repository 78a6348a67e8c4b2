"""Logging: one line per decision on stderr, never a password.

Under Dovecot 2.3 a checkpassword child's stderr is Dovecot's log pipe, where a
plain line is logged as an error; with ``dovecot=True`` lines carry Dovecot's
internal prefix so that successful logins are logged at info level.
Standard library only.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import Enum
from typing import Protocol, TextIO

logger = logging.getLogger("ncauth")

# Dovecot's enum log_type (src/lib/failures.h): DEBUG=0 … ERROR=3; the prefix is
# 0x01, (type + 1), the pid and a space (src/lib/failures.c, i_failure_parse_line).
_DOVECOT_TYPES = {
    logging.DEBUG: 0,
    logging.INFO: 1,
    logging.WARNING: 2,
    logging.ERROR: 3,
    logging.CRITICAL: 4,
}


class _DovecotFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        kind = _DOVECOT_TYPES.get(record.levelno, 3)
        text = super().format(record).replace("\n", " ")
        return f"\x01{chr(kind + 1)}{os.getpid()} {text}"


def setup(level: str = "info", *, stream: TextIO | None = None, dovecot: bool = False) -> None:
    """Send ncauth's log to *stream* (stderr) at *level*."""
    handler = logging.StreamHandler(stream or sys.stderr)
    fmt = "ncauth: %(message)s"
    handler.setFormatter(_DovecotFormatter(fmt) if dovecot else logging.Formatter(fmt))
    logger.handlers[:] = [handler]
    logger.setLevel(getattr(logging, level.upper(), logging.INFO))
    logger.propagate = False


def printable(text: str, limit: int = 128) -> str:
    """*text* safe for one log line: control characters escaped, length capped."""
    out = []
    for c in text[:limit]:
        if c in "\"\\":
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("…" if len(text) > limit else "")


def decision(
    *,
    verdict: str,
    login: str,
    reason: str,
    ms: float,
    user: str = "",
    uid: str = "",
    service: str = "",
    remote_ip: str = "",
    method: str = "",
    via: str = "",
) -> None:
    """Log one authentication decision (the login as typed, never the password)."""
    quoted = {"login": login, "user": user, "uid": uid}
    bare = {"service": printable(service, 32), "rip": printable(remote_ip, 64), "method": method, "via": via}
    parts = [f"verdict={verdict}"]
    parts += [f'{k}="{printable(v)}"' for k, v in quoted.items() if v or k == "login"]
    parts += [f"{k}={v}" for k, v in bare.items() if v]
    parts += [f'reason="{printable(reason, 300)}"', f"ms={ms:.0f}"]
    level = logging.WARNING if verdict == "tempfail" else logging.INFO
    logger.log(level, " ".join(parts))


class Decided(Protocol):
    """What :func:`verdict` reads of a decision (``policy.Verdict``)."""

    @property
    def outcome(self) -> Enum: ...
    @property
    def reason(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def method(self) -> str: ...


def verdict(
    v: Decided, *, login: str, ms: float, service: str = "", remote_ip: str = "", via: str = ""
) -> None:
    """Log the decision *v* (what checkpassword and the daemon each log per request)."""
    decision(
        verdict=v.outcome.value,
        login=login,
        reason=v.reason,
        ms=ms,
        user=v.user,
        uid=v.uid,
        service=service,
        remote_ip=remote_ip,
        method=v.method,
        via=via,
    )
