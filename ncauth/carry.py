"""Which characters each place in Dovecot's configuration cannot carry: one table.

ncauth writes values into several kinds of Dovecot text, and each has its own bytes that
would end the value early or be expanded: checkpassword ``args`` are split on spaces
and cut at ``#`` or a line break; the SQL ``connect`` string is split on spaces, quoted
with quotes and cut at ``#``; an SQL literal passes through Dovecot's ``%`` expansion
(and 2.4's ``$SET:``/``$ENV:``); the Lua script holds the socket path in a double-quoted
string; a userdb value travels tab-escaped, where NUL and the escape byte cannot be sent.
Every writer asks here, so the rules cannot drift apart. Standard library only.
"""

from __future__ import annotations

from ncauth.errors import ConfigError

#: place -> (characters it cannot carry, what they are in words)
CANNOT_CARRY: dict[str, tuple[str, str]] = {
    "checkpassword args": (" \t\n\r#", "a space, line break or #"),
    "SQL connect setting": (" \t\n\"'%$#\\", "a space, quote, backslash, %, $ or #"),
    "SQL literal": ("%$\\\n\r\t\x00", "%, $, \\ or a control character"),
    "Lua string": ('"\\\n\r\x00', "a quote, backslash or control character"),
    "userdb value": ("\t\r\n\x00\x01", "a control character"),
}


def problem(value: str, place: str) -> str:
    """What *value* holds that *place* cannot carry ("" when nothing)."""
    chars, words = CANNOT_CARRY[place]
    return f"contains {words}, which Dovecot's {place} cannot carry" if any(c in value for c in chars) else ""


def check(value: str, place: str, what: str) -> str:
    """*value* unchanged, or ConfigError naming *what* and the reason."""
    if why := problem(value, place):
        raise ConfigError(f"{what} {value!r} {why}")
    return value
