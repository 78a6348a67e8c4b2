"""The daemon's socket protocol, and the Dovecot tab-escaping it shares with checkpassword.

Dovecot separates fields with TAB and escapes the four bytes that would break the
framing (src/lib/strescape.c: ``str_append_tabescaped`` / ``str_tabunescape``): 0x01
becomes ``\\x01 1``, TAB ``\\x01 t``, CR ``\\x01 r``, LF ``\\x01 n``. A checkpassword
reply containing a raw LF or NUL is rejected by Dovecot as an internal failure, so
every value goes through :func:`tab_escape`. ``ncauth.lua`` carries the one other copy
of these rules; ``tests/vectors/tabescape.json`` pins both to the same answers. The
protocol itself is specified in docs/protocol.md.

Standard library only: checkpassword's relay path imports this and nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ncauth.errors import NcauthError
from ncauth.outcome import Outcome

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: checkpassword's relay
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ncauth.records import NamedTuple  # typing's, without its start-up cost

_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def tab_escape(value: str) -> str:
    """Escape *value* for one TAB-separated Dovecot field. NUL cannot be carried."""
    if "\x00" in value:
        raise ValueError("NUL cannot be sent to Dovecot")
    if not any(c in value for c in _ESCAPES):
        return value
    return "".join(_ESCAPES.get(c, c) for c in value)


def tab_unescape(value: str) -> str:
    """Undo :func:`tab_escape` (an ``\\x01`` before any other character yields that character)."""
    if "\x01" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for c in chars:
        if c == "\x01":
            nxt = next(chars, "")
            out.append(_UNESCAPES.get(nxt, nxt))
        else:
            out.append(c)
    return "".join(out)


# --- the daemon's socket protocol ------------------------------------------------------
#
# Specified in docs/protocol.md (the one specification; ncauth.lua implements it too). In
# short: a VERSION 1 handshake, then LF-terminated lines of tab-escaped, TAB-separated
# fields: AUTH/LOOKUP/STATS/USERS requests carrying an id, answered in order with
# OK/FAIL/UNKNOWN/TEMPFAIL and that id (USERS: one USER line per account, then OK count=N).

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
MAX_LINE = 16384  # as Dovecot's auth-client protocol
#: the requests that carry nothing but their id
BARE_COMMANDS = ("STATS", "USERS")
#: the first field of a USERS answer's list lines
LISTED = "USER"
VERDICTS = tuple(o.wire for o in Outcome)


def encode_line(*fields: str) -> bytes:
    """One protocol line: escaped fields, TAB-separated, LF-terminated (UTF-8; undecodable
    password bytes travel as surrogate escapes, any other lone surrogate as a backslash
    escape, so no string can make encoding fail)."""
    text = "\t".join(tab_escape(f) for f in fields) + "\n"
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def decode_line(line: bytes) -> list[str]:
    """The unescaped fields of one line (without its LF)."""
    text = line.rstrip(b"\n").decode("utf-8", "surrogateescape")
    return [tab_unescape(f) for f in text.split("\t")]


def key_values(fields: Iterable[str]) -> dict[str, str]:
    """``key=value`` fields as a dict (a bare ``key`` maps to "")."""
    out: dict[str, str] = {}
    for f in fields:
        key, _, value = f.partition("=")
        out[key] = value
    return out


class MalformedRequest(NcauthError):
    """A line that is not a request; answered TEMPFAIL for *rid*, never decided."""

    def __init__(self, rid: str, reason: str) -> None:
        super().__init__(reason)
        self.rid, self.reason = rid, reason


#: Request, Reply and Listed are NamedTuples, not dataclasses: checkpassword's relay
#: imports this module, and ``dataclasses`` (with ``inspect``) would cost it milliseconds.


class Request(NamedTuple):
    """One request line: ``AUTH`` (with a password), ``LOOKUP``, ``STATS`` or ``USERS``."""

    command: str
    rid: str
    user: str = ""
    password: bytes | None = None
    extra: Mapping[str, str] = MappingProxyType({})

    @classmethod
    def parse(cls, line: bytes) -> Request:
        """The request on *line*; MalformedRequest when it is none."""
        return cls.from_fields(decode_line(line))

    @classmethod
    def from_fields(cls, fields: list[str]) -> Request:
        """The request the unescaped *fields* of a line make (a NUL cannot be carried
        back, so it makes any request malformed)."""
        command, rid = fields[0], fields[1] if len(fields) > 1 else ""
        if any("\x00" in f for f in fields):
            raise MalformedRequest(rid.replace("\x00", ""), "malformed request: NUL byte")
        if command in BARE_COMMANDS and len(fields) >= 2:
            return cls(command, rid)
        if command == "AUTH" and len(fields) >= 4:
            password = fields[3].encode("utf-8", "surrogateescape")
            return cls(command, rid, fields[2], password, key_values(fields[4:]))
        if command == "LOOKUP" and len(fields) >= 3:
            return cls(command, rid, fields[2], None, key_values(fields[3:]))
        raise MalformedRequest(rid, f"malformed or unknown request {command[:16]!r}")

    def encode(self) -> bytes:
        args: list[str] = []
        if self.command not in BARE_COMMANDS:
            args.append(self.user)
        if self.password is not None:
            args.append(self.password.decode("utf-8", "surrogateescape"))
        return encode_line(self.command, self.rid, *args, *(f"{k}={v}" for k, v in self.extra.items()))


class Reply(NamedTuple):
    """One answer line: a verdict of VERDICTS, the request's id, ``key=value`` fields."""

    verdict: str
    rid: str
    fields: dict[str, str]

    @classmethod
    def parse(cls, line: bytes) -> Reply | None:
        """The answer on *line*, or None when it is not one."""
        fields = decode_line(line)
        if len(fields) < 2 or fields[0] not in VERDICTS:
            return None
        return cls(fields[0], fields[1], key_values(fields[2:]))

    def encode(self) -> bytes:
        return encode_line(self.verdict, self.rid, *(f"{k}={v}" for k, v in self.fields.items()))


class Listed(NamedTuple):
    """One list line of a USERS answer: an account's canonical name."""

    rid: str
    name: str

    @classmethod
    def parse(cls, line: bytes) -> Listed | None:
        """The list line on *line*, or None when it is not one."""
        fields = decode_line(line)
        if len(fields) != 3 or fields[0] != LISTED:
            return None
        return cls(fields[1], fields[2])

    def encode(self) -> bytes:
        return encode_line(LISTED, self.rid, self.name)


HELLO = encode_line("VERSION", str(PROTOCOL_MAJOR), str(PROTOCOL_MINOR))


def is_hello(line: bytes) -> bool:
    """Is *line* a version-1 handshake (any minor version)?"""
    return decode_line(line)[:2] == ["VERSION", str(PROTOCOL_MAJOR)]
