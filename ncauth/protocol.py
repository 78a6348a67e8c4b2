"""Dovecot's wire details that ncauth speaks: tab-escaping and reply fields.

Dovecot separates fields with TAB and escapes the four bytes that would break the
framing (src/lib/strescape.c: ``str_append_tabescaped`` / ``str_tabunescape``): 0x01
becomes ``\\x01 1``, TAB ``\\x01 t``, CR ``\\x01 r``, LF ``\\x01 n``. A checkpassword
reply containing a raw LF or NUL is rejected by Dovecot as an internal failure, so
every value goes through :func:`tab_escape`. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def encode_fields(fields: Iterable[tuple[str, str]]) -> str:
    """``key=value`` pairs, escaped and TAB-separated."""
    return "\t".join(f"{tab_escape(k)}={tab_escape(v)}" for k, v in fields)


def reply_fields(
    user: str, userdb: Mapping[str, str], extra: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """The checkpassword reply: the canonical user, then ``userdb_<key>`` fields."""
    fields = [("user", user)]
    fields += [(f"userdb_{k}", v) for k, v in userdb.items()]
    fields += list(extra)
    return fields


# --- the daemon's socket protocol ------------------------------------------------------
#
# One Unix stream connection carries any number of requests. Every line ends with LF and
# is TAB-separated, each field tab-escaped as above; at most MAX_LINE bytes.
#
#   client: VERSION <TAB> 1 <TAB> 0                       (first line, always)
#   server: VERSION <TAB> 1 <TAB> 0
#   client: AUTH   <TAB> id <TAB> user <TAB> password [<TAB> key=value ...]
#           LOOKUP <TAB> id <TAB> user [<TAB> key=value ...]
#           STATS  <TAB> id
#   server: OK       <TAB> id [<TAB> key=value ...]   user=<canonical>, userdb_<k>=<v>...
#           FAIL     <TAB> id <TAB> reason=...        known user, refused
#           UNKNOWN  <TAB> id <TAB> reason=...        no such user
#           TEMPFAIL <TAB> id <TAB> reason=...        try again later (also: busy, malformed)
#
# Request keys: service=imap|pop3|smtp|..., rip=<client IP>, lip=<local IP>. Unknown keys
# are ignored. Answers come in request order; "id" (any string without TAB) is echoed so
# that a client may pipeline. A line that is too long, or a first line that is not a
# VERSION 1 handshake, gets one TEMPFAIL answer and the connection is closed.

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
MAX_LINE = 16384  # as Dovecot's auth-client protocol
VERDICTS = ("OK", "FAIL", "UNKNOWN", "TEMPFAIL")


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
