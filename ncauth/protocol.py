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


def reply_fields(user: str, userdb: Mapping[str, str], extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The checkpassword reply: the canonical user, then ``userdb_<key>`` fields."""
    fields = [("user", user)]
    fields += [(f"userdb_{k}", v) for k, v in userdb.items()]
    fields += list(extra)
    return fields
