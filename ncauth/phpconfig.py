"""Read Nextcloud's ``config.php`` as data, never as code.

Why this exists: ``config.php`` and every ``*.config.php`` beside it live in a folder
the web server can write. Running them through ``php`` (as ncauth once did, as root
for ``ncauth verify``) let anyone who could drop ``evil.config.php`` there run code as
root. This module parses the literal subset Nextcloud itself writes
(``lib/private/Config.php::writeData`` = ``"<?php\\n$CONFIG = " . var_export(...) . ";\\n"``)
plus what admins hand-edit (comments, ``[...]``, double quotes, number formats), and
refuses everything else with a :class:`ConfigError` naming file, line and what was
found. Nothing is ever evaluated.

Accepted: ``<?php``; ``//``, ``#``, ``/* */`` comments; statements ``$CONFIG = <value>;``
and ``$CONFIG[<key>]...[<key>] = <value>;``; optional closing ``?>`` (whitespace only
after it). Values: ``array(...)``/``[...]`` (keys, list items, trailing comma, PHP key
casting and auto-indexing), single-quoted strings (``\\\\`` and ``\\'``), double-quoted
strings with PHP's escapes (``$`` interpolation refused), quoted strings joined by
``.`` (var_export writes a NUL byte as ``'' . "\\0" . ''``; any other operand is
refused), ints (decimal, ``0x``, ``0b``, ``0o``/leading-0 octal, ``_`` separators, one
unary sign, overflow to float exactly as PHP rounds it), floats, ``true``/``false``/
``null`` in any case.
Refused, by decision:
  * ``getenv('X')``: it reads the *web server's* environment, which ncauth (run by
    Dovecot) does not share, so any value ncauth saw would be wrong. Put the value in
    ncauth.toml instead.
  * heredoc/nowdoc, constants (``PHP_INT_MAX``, ``INF``), ``\\true``, casts,
    concatenation with anything but a quoted string, arithmetic (so also var_export's
    ``-9223372036854775807-1`` for PHP_INT_MIN), calls, ``include``, backticks, variables.
Strings must be valid UTF-8 (json_encode, and so every other reader, needs that too).
Limits: 1 MiB per file, arrays nested at most 64 deep.

PHP arrays come back as ``dict`` with ``int``/``str`` keys in PHP order (``[0 => 'a']``
is ``{0: 'a'}``), because ``array_merge`` treats int and string keys differently.

Reading like Nextcloud (``Config::readData``): ``config.php`` first, then
``glob(dir . '*.' . basename)`` (no dot-files) in ``natsort`` order, each merged with
``array_merge`` (string keys overwrite in place, integer keys are renumbered 0..n
across all files, including config.php's own). A file whose ``$CONFIG`` is unset,
``null`` or not an array contributes nothing, as in Nextcloud. Differences, on
purpose: a missing/unreadable main file is an error (Nextcloud silently starts
empty); an unreadable folder listing is an error (PHP's glob silently returns
nothing, which would drop overrides); a matching entry that is not a regular file is
an error. ``NC_<key>`` environment overrides (``Config::getValue``) live in the web
server's environment and are not seen. Files are read under ``flock(LOCK_SH)``, as
Nextcloud reads them, so a half-written file is never parsed.

Permission rule (checked on the open descriptors, no TOCTOU): trusted owners are
root, the user ncauth runs as, and the owner of ``config.php`` (the web server user:
it may write the data we *parse*). Every file read, the config folder, and every
folder above them (after resolving symlinks) must be owned by a trusted user and
not be writable by group or others -- except group root (gid 0), whose members are
root-equivalent anyway, and, for folders above, a sticky bit (``/tmp``-like: others
cannot rename what they do not own). Symlinks are followed and their targets checked
the same way; the last component is opened with ``O_NOFOLLOW`` from the checked folder.

Nextcloud's getters (verified in nextcloud/server; ``Config::getValue`` uses
``isset``, so a ``null`` value reads as the default)::

  key                          Nextcloud reads it with                               where
  dbtype                       getValue('dbtype', 'sqlite')  ('sqlite'=='sqlite3')     lib/private/DB/ConnectionFactory.php::createConnectionParams
  dbhost                       getValue('dbhost', '') -> splitHostFromPortAndSocket  lib/private/DB/ConnectionFactory.php::createConnectionParams
  dbport                       NOT READ at runtime (only written by setup)           lib/private/Setup/AbstractDatabase.php::initialize
  dbname                       getValue('dbname', 'owncloud')                        lib/private/DB/ConnectionFactory.php::createConnectionParams
  dbuser                       getValue('dbuser', '')                                lib/private/DB/ConnectionFactory.php::createConnectionParams
  dbpassword                   getValue('dbpassword', '')                            lib/private/DB/ConnectionFactory.php::createConnectionParams
  dbtableprefix                getValue('dbtableprefix', 'oc_')                      lib/private/DB/ConnectionFactory.php::createConnectionParams
  datadirectory                getValue(.., SERVERROOT.'/data') (sqlite path);       lib/private/DB/ConnectionFactory.php::createConnectionParams,
                               getSystemValueString (home)                           lib/private/User/User.php::getHome
  secret                       getSystemValueString('secret')                        lib/private/Authentication/Token/PublicKeyTokenProvider.php::hashToken
  passwordsalt                 getSystemValue('passwordsalt', '') . concatenated     lib/private/Security/Hasher.php::legacyHashVerify
  hashingMemoryCost            max(getSystemValueInt(.., 65536), threads*8)          lib/private/Security/Hasher.php::__construct
  hashingTimeCost              max(getSystemValueInt(.., 4), 1)                      lib/private/Security/Hasher.php::__construct
  hashingThreads               max(getSystemValueInt(.., 1), 1)                      lib/private/Security/Hasher.php::__construct
  twofactor_enforced           getSystemValue(.., 'false') === 'true' (commits        lib/private/Authentication/TwoFactorAuth/MandatoryTwoFactor.php::getState
                               8177fdb..cc8fc27, 2018-2024); getSystemValueBool(..,
                               false) in the newest stored master (22ab072, #[\\Override] era)
  twofactor_enforced_groups    getSystemValue(.., []) into EnforcementState(array)   lib/private/Authentication/TwoFactorAuth/MandatoryTwoFactor.php::getState
  twofactor_enforced_excluded_groups  same                                           same
  token_auth_enforced          getSystemValueBool(.., false) (older: raw, truthy)    lib/private/User/Session.php::isTokenAuthEnforced
  allow_user_to_change_display_name  getSystemValueBool(.., true)                    lib/private/User/User.php::canChangeDisplayName
                               (older: getSystemValue(..) === false disables)

What writes them: ``occ config:system:set K --value=V`` writes the *string* V (default
``--type=string``); ``--type=boolean`` writes true/false, ``--type=integer`` ``(int)V``
(core/Command/Config/System/CastHelper.php). ``occ twofactorauth:enforce --on/--off``
writes the strings 'true'/'false' (MandatoryTwoFactor::setState) in the older code and
booleans (setSystemValueBool) in the newest. :func:`nextcloud_settings` reads ``twofactor_enforced`` so
that both generations' own writes mean what they meant: strings by the old rule
(=== 'true'), everything else by ``(bool)``.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import math
import os
import re
import stat
import time
from typing import Any, NamedTuple

from ncauth.errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_SIZE",
    "NextcloudSettings",
    "PhpConfig",
    "natsort_key",
    "nextcloud_settings",
    "parse_config_php",
    "php_array_merge",
    "php_bool",
    "php_int",
    "php_is_numeric",
    "php_string",
    "read_nextcloud_config",
    "split_dbhost",
    "system_value",
    "system_value_bool",
    "system_value_int",
    "system_value_string",
]

MAX_FILE_SIZE = 1 << 20
MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_LOCK_WAIT = 5.0

#: Keys whose values never appear in an error message (top-level keys from
#: SystemConfig::$sensitiveValues, plus anything that looks like a credential).
_SENSITIVE_RE = re.compile(r"pass|secret|salt|key|token|pwd|dsn|instanceid|dbuser|dbname|dbhost", re.I)

_WS = re.compile(rb"[ \t\r\n]+")
_LINE_COMMENT_END = re.compile(rb"\r|\n|\?>")
_IDENT = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
_NUMBER = re.compile(
    rb"0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*"
    rb"|0[bB][01]+(?:_[01]+)*"
    rb"|0[oO][0-7]+(?:_[0-7]+)*"
    rb"|(?:(?:[0-9]+(?:_[0-9]+)*)?\.[0-9]+(?:_[0-9]+)*|[0-9]+(?:_[0-9]+)*\.(?:[0-9]+(?:_[0-9]+)*)?|[0-9]+(?:_[0-9]+)*)"
    rb"(?:[eE][+-]?[0-9]+(?:_[0-9]+)*)?"
)
_IDENT_CHAR = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") | frozenset(
    range(0x80, 0x100)
)
_SQ_PLAIN = re.compile(rb"[^'\\]+")
_DQ_PLAIN = re.compile(rb"[^\"\\${]+")
_DQ_SIMPLE = {
    ord("n"): b"\n",
    ord("t"): b"\t",
    ord("r"): b"\r",
    ord("v"): b"\v",
    ord("e"): b"\x1b",
    ord("f"): b"\f",
    ord("\\"): b"\\",
    ord("$"): b"$",
    ord('"'): b'"',
}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_OCT = frozenset(b"01234567")
_CANONICAL_INT = re.compile(r"(?:0|-?[1-9][0-9]{0,18})\Z")
_OPERATOR_HINTS = {
    ".": "string concatenation",
    "+": "arithmetic",
    "-": "arithmetic",
    "*": "arithmetic",
    "/": "arithmetic",
    "%": "arithmetic",
    "|": "a bitwise operator",
    "&": "a reference or bitwise operator",
    "^": "a bitwise operator",
    "~": "a bitwise operator",
    "?": "a ternary or null-coalescing operator",
    "(": "a call or parenthesised expression",
    "[": "an array offset",
    ":": "a class constant (::)",
    "=": "an assignment or comparison",
    "!": "a negation",
    "<": "a comparison or heredoc",
    ">": "a comparison",
    "@": "the error-suppression operator",
    "`": "a backtick shell command",
    "$": "a variable",
    "\\": "a namespaced name",
}


class _Unset:
    """$CONFIG before any assignment (distinct from null)."""


_UNSET = _Unset()


class _Parser:
    """Recursive-descent parser over the file's bytes; depth is bounded, so no input
    can exhaust Python's stack."""

    def __init__(self, src: bytes, name: str) -> None:
        self.src = src
        self.n = len(src)
        self.pos = 0
        self.name = name
        self.keys: list[object] = []

    # --- errors -------------------------------------------------------------------
    def _line(self, pos: int) -> int:
        return self.src.count(b"\n", 0, min(pos, self.n)) + 1

    def _sensitive(self) -> str | None:
        for key in self.keys:
            if isinstance(key, str) and _SENSITIVE_RE.search(key):
                return key
        return None

    def fail(self, what: str, pos: int | None = None, *, shows_text: bool = False) -> ConfigError:
        """An error naming file and line; text from the file is dropped inside a
        sensitive key so that no password can reach a log."""
        where = self.pos if pos is None else pos
        key = self._sensitive()
        if shows_text and key is not None:
            what = (
                f"PHP code where a literal value belongs (details not shown: inside the sensitive key "
                f"{key!r}); config.php may only hold literal values and ncauth never runs PHP code"
            )
        return ConfigError(f"{self.name}: line {self._line(where)}: {what}")

    def _snippet(self, pos: int, length: int = 24) -> str:
        text = self.src[pos : pos + length].split(b"\n", 1)[0]
        return ascii(text.decode("utf-8", "replace"))[1:-1]

    def _found(self, pos: int) -> ConfigError:
        """Describe what stands at pos where a literal or punctuation was expected."""
        src = self.src
        if pos >= self.n:
            return self.fail("unexpected end of file", pos)
        c = src[pos]
        m = _IDENT.match(src, pos)
        if m:
            name = m.group().decode("utf-8", "replace")
            after = self._peek_after_ws(m.end())
            low = name.lower()
            shows_text = False
            if low in ("include", "include_once", "require", "require_once"):
                what = f"an {low} statement"
            elif low in ("eval", "exit", "die", "print", "echo", "new", "function", "fn", "static", "global"):
                what = f"PHP code ({low!r})"
            elif low == "getenv" and after == b"(":
                return self.fail(
                    "found getenv(): not supported, because it reads the web server's environment, "
                    "which ncauth does not share; put that value into ncauth's own configuration",
                    pos,
                )
            elif after == b"(":
                what, shows_text = f"a function call {name[:40]}()", True
            elif src.startswith(b"::", self._skip_ws_from(m.end())):
                what, shows_text = f"a class constant {name[:40]}::...", True
            else:
                what, shows_text = f"a constant {name[:40]!r}", True
            return self.fail(
                f"found {what}; config.php may only hold literal values "
                "(strings, numbers, true/false/null, arrays) and ncauth never runs PHP code",
                pos,
                shows_text=shows_text,
            )
        if src.startswith(b"<<<", pos):
            return self.fail(
                "found a heredoc/nowdoc string, which ncauth does not support; use a quoted string", pos
            )
        if c == ord("$"):
            vm = _IDENT.match(src, pos + 1)
            var = "$" + vm.group().decode("utf-8", "replace")[:40] if vm else "$"
            return self.fail(
                f"found the variable {var}; only assignments to $CONFIG are understood", pos, shows_text=True
            )
        hint = _OPERATOR_HINTS.get(chr(c)) if c < 128 else None
        if hint:
            return self.fail(
                f"found {chr(c)!r} ({hint}); config.php may only hold literal values "
                "and ncauth never runs PHP code",
                pos,
                shows_text=True,
            )
        return self.fail(f"unexpected character {self._snippet(pos, 1)!r}", pos, shows_text=True)

    # --- lexical helpers ----------------------------------------------------------
    def _skip_ws_from(self, pos: int) -> int:
        """Position after whitespace and comments; a // or # comment ends at a newline
        or at ?> (as in PHP), leaving the ?> in place."""
        src, n = self.src, self.n
        while pos < n:
            c = src[pos]
            if c in b" \t\r\n":
                ws = _WS.match(src, pos)
                assert ws is not None  # src[pos] is white space
                pos = ws.end()
            elif c == ord("#") or (c == ord("/") and src.startswith(b"//", pos)):
                if src.startswith(b"#[", pos):
                    raise self.fail(
                        "'#[' starts a PHP 8 attribute, not a comment (PHP would refuse this file)", pos
                    )
                m = _LINE_COMMENT_END.search(src, pos)
                pos = m.start() if m else n
            elif c == ord("/") and src.startswith(b"/*", pos):
                end = src.find(b"*/", pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment", pos)
                pos = end + 2
            else:
                break
        return pos

    def skip_ws(self) -> None:
        self.pos = self._skip_ws_from(self.pos)

    def _peek_after_ws(self, pos: int) -> bytes:
        try:
            p = self._skip_ws_from(pos)
        except ConfigError:
            return b""
        return self.src[p : p + 1]

    # --- file and statements ------------------------------------------------------
    def parse_file(self) -> Any:
        src = self.src
        if src[:5].lower() != b"<?php":
            if src.startswith(b"\xef\xbb\xbf"):
                raise self.fail(
                    "the file starts with a UTF-8 byte-order mark before <?php "
                    "(Nextcloud refuses it too: 'Config file has leading content')",
                    0,
                )
            if src.lstrip()[:5].lower() == b"<?php":
                raise self.fail(
                    "content before <?php (Nextcloud refuses it too: 'Config file has leading content')", 0
                )
            raise self.fail("not a PHP config file: it must start with <?php", 0)
        self.pos = 5
        if self.pos < self.n and src[self.pos] not in b" \t\r\n":
            raise self.fail("<?php must be followed by whitespace", self.pos)
        config: Any = _UNSET
        while True:
            self.skip_ws()
            if self.pos >= self.n:
                break
            if src.startswith(b"?>", self.pos):
                self._close_tag()
                break
            if src[self.pos] == ord(";"):
                self.pos += 1
                continue
            if src.startswith(b"$CONFIG", self.pos) and (
                self.pos + 7 >= self.n or src[self.pos + 7] not in _IDENT_CHAR
            ):
                config = self._assignment(config)
                continue
            raise self._found(self.pos)
        return config

    def _close_tag(self) -> None:
        self.pos += 2
        if self.src.startswith(b"\r\n", self.pos):
            self.pos += 2
        elif self.src.startswith(b"\n", self.pos):
            self.pos += 1
        rest = self.src[self.pos :]
        if rest.strip(b" \t\r\n"):
            off = len(rest) - len(rest.lstrip(b" \t\r\n"))
            raise self.fail(
                "content after ?> (PHP would print it; only whitespace may follow ?>)", self.pos + off
            )
        self.pos = self.n

    def _assignment(self, config: Any) -> Any:
        self.pos += 7
        path: list[int | str] = []
        while True:
            self.skip_ws()
            if self.pos < self.n and self.src[self.pos] == ord("["):
                open_pos = self.pos
                self.pos += 1
                self.skip_ws()
                if self.src.startswith(b"]", self.pos):
                    raise self.fail("$CONFIG[] = ... (append) is not supported; name the key", open_pos)
                key = self._key(self._value(1), open_pos)
                path.append(key)
                self.skip_ws()
                self._expect(b"]")
                continue
            break
        if not (
            self.src.startswith(b"=", self.pos)
            and not self.src.startswith(b"==", self.pos)
            and not self.src.startswith(b"=>", self.pos)
        ):
            raise (
                self._found(self.pos)
                if self.pos < self.n
                else self.fail("unexpected end of file after $CONFIG")
            )
        self.pos += 1
        self.keys = list(path)
        value = self._value(0)
        self.skip_ws()  # self.keys still names the assigned key here
        if self.pos < self.n and self.src[self.pos] == ord(";"):
            self.pos += 1
        elif not self.src.startswith(b"?>", self.pos):
            if self.pos >= self.n:
                raise self.fail("missing ';' at end of file")
            raise self._found(self.pos)
        self.keys = []
        if not path:
            return value
        if config is _UNSET or config is None:
            config = {}
        if not isinstance(config, dict):
            raise self.fail("$CONFIG[...] = ... on a $CONFIG that is not an array")
        node = config
        for key in path[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise self.fail(f"$CONFIG[...][...] = ... where {key!r} is not an array")
            node = child
        node[path[-1]] = value
        return config

    def _expect(self, token: bytes) -> None:
        if not self.src.startswith(token, self.pos):
            if self.pos >= self.n:
                raise self.fail(f"unexpected end of file, expected {token.decode()!r}")
            raise self._found(self.pos)
        self.pos += len(token)

    # --- values -------------------------------------------------------------------
    def _value(self, depth: int) -> Any:
        self.skip_ws()
        src, pos = self.src, self.pos
        if pos >= self.n:
            raise self.fail("unexpected end of file, expected a value")
        c = src[pos]
        if c in b"'\"":
            return self._strings()
        if c == ord("["):
            return self._array(depth, b"]")
        if c in b"-+":
            self.pos += 1
            self.skip_ws()
            m = _NUMBER.match(src, self.pos)
            if not m:
                raise self.fail("a sign must be followed by a number (anything else is PHP code)", pos)
            value = self._number(m)
            return -value if c == ord("-") else value
        if c in b"0123456789" or (c == ord(".") and src[pos + 1 : pos + 2].isdigit()):
            m = _NUMBER.match(src, pos)
            assert m is not None
            return self._number(m)
        m = _IDENT.match(src, pos)
        if m:
            word = m.group().lower()
            after = self._peek_after_ws(m.end())
            if word in (b"true", b"false", b"null") and after not in (b"(", b":"):
                self.pos = m.end()
                return {b"true": True, b"false": False, b"null": None}[word]
            if word == b"array" and after == b"(":
                self.pos = self._skip_ws_from(m.end())
                return self._array(depth, b")")
        raise self._found(pos)

    def _strings(self) -> str:
        """A quoted string, or several joined with '.': var_export() itself writes a NUL
        byte as '' . "\0" . '', so literal-only concatenation is data Nextcloud writes.
        Concatenating anything else stays refused."""
        parts = [self._quoted()]
        while True:
            after = self._skip_ws_from(self.pos)
            src = self.src
            if not (
                src.startswith(b".", after)
                and not src.startswith(b".=", after)
                and not src[after + 1 : after + 2].isdigit()
            ):
                return "".join(parts)
            operand = self._skip_ws_from(after + 1)
            if src[operand : operand + 1] not in (b"'", b'"'):
                raise self.fail(
                    "found '.' (string concatenation) with something that is not a quoted string; "
                    "config.php may only hold literal values and ncauth never runs PHP code",
                    after,
                )
            self.pos = operand
            parts.append(self._quoted())

    def _quoted(self) -> str:
        return self._single_quoted() if self.src[self.pos] == ord("'") else self._double_quoted()

    def _number(self, m: re.Match[bytes]) -> int | float:
        text = m.group().replace(b"_", b"")
        end = m.end()
        if end < self.n and (self.src[end] in _IDENT_CHAR or self.src[end] == ord(".")):
            raise self.fail(
                f"invalid numeric literal {self._snippet(m.start())!r}", m.start(), shows_text=True
            )
        self.pos = end
        low = text.lower()
        if low.startswith((b"0x", b"0b", b"0o")):
            base = {b"x": 16, b"b": 2, b"o": 8}[low[1:2]]
            return _int_or_float(text[2:], base)
        if any(ch in low for ch in b".e"):
            return float(text)
        if len(text) > 1 and text[0] == ord("0"):
            if any(ch in text for ch in b"89"):
                raise self.fail(
                    f"invalid numeric literal {self._snippet(m.start())!r} (8 or 9 in an octal number)",
                    m.start(),
                    shows_text=True,
                )
            return _int_or_float(text, 8)
        if len(text) > 19:
            return float(text)
        value = int(text)
        return value if value <= _INT_MAX else float(text)

    def _single_quoted(self) -> str:
        src, start = self.src, self.pos
        i = start + 1
        out = bytearray()
        while True:
            m = _SQ_PLAIN.match(src, i)
            if m:
                out += m.group()
                i = m.end()
            if i >= self.n:
                raise self.fail("unterminated single-quoted string", start)
            c = src[i]
            if c == ord("'"):
                break
            # backslash
            if i + 1 >= self.n:
                raise self.fail("unterminated single-quoted string", start)
            nxt = src[i + 1]
            if nxt in b"\\'":
                out.append(nxt)
            else:
                out += src[i : i + 2]
            i += 2
        self.pos = i + 1
        return self._decode(bytes(out), start)

    def _double_quoted(self) -> str:
        src, start, n = self.src, self.pos, self.n
        i = start + 1
        out = bytearray()
        while True:
            m = _DQ_PLAIN.match(src, i)
            if m:
                out += m.group()
                i = m.end()
            if i >= n:
                raise self.fail("unterminated double-quoted string", start)
            c = src[i]
            if c == ord('"'):
                break
            if c == ord("$"):
                if i + 1 < n and (
                    (src[i + 1] in _IDENT_CHAR and not src[i + 1 : i + 2].isdigit()) or src[i + 1] == ord("{")
                ):
                    raise self.fail(
                        "a '$' followed by a name or '{' in a double-quoted string is PHP variable "
                        "interpolation; write \\$ or use single quotes",
                        i,
                    )
                out.append(c)
                i += 1
                continue
            if c == ord("{"):
                if src.startswith(b"{$", i):
                    raise self.fail(
                        "'{$' in a double-quoted string is PHP variable interpolation; "
                        "write {\\$ or use single quotes",
                        i,
                    )
                out.append(c)
                i += 1
                continue
            # backslash escape
            if i + 1 >= n:
                raise self.fail("unterminated double-quoted string", start)
            d = src[i + 1]
            simple = _DQ_SIMPLE.get(d)
            if simple is not None:
                out += simple
                i += 2
            elif d in _OCT:
                j = i + 1
                while j < n and j < i + 4 and src[j] in _OCT:
                    j += 1
                out.append(int(src[i + 1 : j], 8) & 0xFF)
                i = j
            elif d == ord("x") and i + 2 < n and src[i + 2] in _HEX:
                j = i + 2
                while j < n and j < i + 4 and src[j] in _HEX:
                    j += 1
                out.append(int(src[i + 2 : j], 16))
                i = j
            elif d == ord("u") and src.startswith(b"{", i + 2):
                close = src.find(b"}", i + 3)
                digits = src[i + 3 : close] if close > 0 else b""
                if close < 0 or not digits or any(ch not in _HEX for ch in digits):
                    raise self.fail("invalid \\u{...} escape in a double-quoted string", i)
                cp = int(digits, 16) if len(digits) <= 8 else 0x110000
                if cp > 0x10FFFF:
                    raise self.fail("\\u{...} escape beyond U+10FFFF", i)
                out += chr(cp).encode("utf-8", "surrogatepass")
                i = close + 1
            else:
                out.append(c)  # unknown escape: PHP keeps the backslash
                i += 1
        self.pos = i + 1
        return self._decode(bytes(out), start)

    def _decode(self, raw: bytes, start: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a string that is not valid UTF-8", start) from None

    def _array(self, depth: int, close: bytes) -> dict[int | str, Any]:
        if depth >= MAX_DEPTH:
            raise self.fail(f"arrays nested deeper than {MAX_DEPTH} levels")
        self.pos += 1
        result: dict[int | str, Any] = {}
        next_free: int | None = None  # PHP's nNextFreeElement, None = ZEND_LONG_MIN ("none yet")
        while True:
            self.skip_ws()
            if self.src.startswith(close, self.pos):
                self.pos += 1
                return result
            if self.pos >= self.n:
                raise self.fail(f"unexpected end of file inside an array, expected {close.decode()!r}")
            item_pos = self.pos
            if self.src[item_pos] == ord(","):
                raise self.fail("empty array element", item_pos)
            if self.src.startswith(b"...", item_pos):
                raise self.fail("'...' (array unpacking) is PHP code", item_pos)
            self.keys.append(len(result))
            first = self._value(depth + 1)
            self.skip_ws()
            if self.src.startswith(b"=>", self.pos):
                self.pos += 2
                key: int | str = self._key(first, item_pos)
                self.keys[-1] = key
                value = self._value(depth + 1)
            else:
                if next_free is None:
                    key = 0
                else:
                    key = next_free
                    if key in result:
                        raise self.fail(
                            "cannot add element to the array: the next index is already occupied", item_pos
                        )
                value = first
            result[key] = value
            if isinstance(key, int) and (next_free is None or key >= next_free):
                next_free = key + 1 if key < _INT_MAX else _INT_MAX
            self.skip_ws()  # the key stays in self.keys until here: what follows a secret is not shown either
            if self.src.startswith(b",", self.pos):
                self.pos += 1
            elif not self.src.startswith(close, self.pos):
                if self.pos >= self.n:
                    raise self.fail(
                        f"unexpected end of file inside an array, expected ',' or {close.decode()!r}"
                    )
                raise self._found(self.pos)
            self.keys.pop()

    def _key(self, value: Any, pos: int) -> int | str:
        """PHP's array-key cast: canonical decimal strings become ints, bools ints,
        null '', floats are truncated."""
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            if len(value) <= 20 and _CANONICAL_INT.match(value):
                number = int(value)
                if _INT_MIN <= number <= _INT_MAX:
                    return number
            return value
        if value is None:
            return ""
        if isinstance(value, float):
            if math.isfinite(value) and -(2.0**63) <= value < 2.0**63:
                return int(value)
            raise self.fail("a float array key that is not finite or out of integer range", pos)
        raise self.fail("an array used as an array key", pos)


def _int_or_float(digits: bytes, base: int) -> int | float:
    """PHP's hex/octal/binary literal: an int, or, past PHP_INT_MAX, the float PHP
    computes digit by digit in doubles: zend_hex_strtod adds the digit's value,
    zend_oct_strtod and zend_bin_strtod compute ``value * base + c - '0'`` left to
    right, so ``+ c`` rounds before ``- '0'`` does."""
    value = int(digits, base)
    if value <= _INT_MAX:
        return value
    acc = 0.0
    for ch in digits:
        if base == 16:
            acc = acc * 16 + int(chr(ch), 16)
        else:
            acc = acc * base + ch - ord("0")
    return acc


def parse_config_php(source: bytes, name: str = "config.php") -> dict[int | str, Any] | None:
    """The array a config.php assigns to ``$CONFIG``, or None when it assigns none,
    null or a non-array (Nextcloud ignores such a file). Raises ConfigError, naming
    ``name`` and the line, for anything that is not a literal."""
    if len(source) > MAX_FILE_SIZE:
        raise ConfigError(f"{name}: larger than {MAX_FILE_SIZE} bytes; not a Nextcloud config file")
    config = _Parser(bytes(source), name).parse_file()
    return config if isinstance(config, dict) else None


# --- reading the files like Config::readData -----------------------------------------


class PhpConfig(NamedTuple):
    """The merged system config and the files it came from, in merge order."""

    data: dict[int | str, Any]
    files: tuple[str, ...]


def _who(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _check_owner_mode(
    st: os.stat_result, path: str, kind: str, trusted: set[int], *, ancestor: bool = False
) -> None:
    """Refuse anything a user other than the trusted ones could write (see module doc)."""
    if st.st_uid not in trusted:
        names = ", ".join(_who(u) for u in sorted(trusted))
        raise ConfigError(
            f"refusing to read Nextcloud's config: {kind} {path} is owned by {_who(st.st_uid)}, who is neither "
            f"root, the user ncauth runs as, nor the owner of config.php ({names}); whoever owns it could plant "
            f"settings. Fix: chown root (or the web server user) {path}"
        )
    mode = st.st_mode
    if ancestor and mode & stat.S_ISVTX:
        return
    if mode & stat.S_IWOTH:
        raise ConfigError(
            f"refusing to read Nextcloud's config: {kind} {path} is writable by everyone "
            f"(mode {stat.S_IMODE(mode):04o}), so anyone could plant settings there. Fix: chmod o-w {path}"
        )
    if mode & stat.S_IWGRP and st.st_gid != 0:
        try:
            import grp

            group = f"{grp.getgrgid(st.st_gid).gr_name} (gid {st.st_gid})"
        except (KeyError, ImportError):
            group = f"gid {st.st_gid}"
        raise ConfigError(
            f"refusing to read Nextcloud's config: {kind} {path} is writable by group {group} "
            f"(mode {stat.S_IMODE(mode):04o}); only root and the owner of config.php may write it. "
            f"Fix: chmod g-w {path}"
        )


def _check_ancestors(directory: str, trusted: set[int]) -> None:
    parent = os.path.dirname(directory)
    while True:
        try:
            st = os.stat(parent)
        except OSError as exc:
            raise ConfigError(f"cannot check folder {parent}: {exc.strerror}") from None
        _check_owner_mode(st, parent, "folder", trusted, ancestor=True)
        if parent == os.path.dirname(parent):
            return
        parent = os.path.dirname(parent)


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(
            f"cannot open Nextcloud's config folder {path} (uid {os.geteuid()}): {exc.strerror}"
        ) from None


def _read_checked(path: str, trusted: set[int] | None) -> tuple[bytes, set[int]]:
    """Read one config file after checking it, its folder and the folders above on
    the open descriptors; trusted=None means 'this is config.php: its owner joins
    root and us as trusted'."""
    real = os.path.realpath(path)
    folder, base = os.path.split(real)
    dfd = _open_dir(folder)
    try:
        try:
            fd = os.open(
                base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dfd
            )
        except OSError as exc:
            hint = (
                " (add that user to the file's group, e.g. www-data, or give the file group dovecot)"
                if exc.errno == errno.EACCES
                else ""
            )
            raise ConfigError(f"cannot open {path} (uid {os.geteuid()}): {exc.strerror}{hint}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"refusing to read {path}: not a regular file")
            if trusted is None:
                trusted = {0, os.geteuid(), st.st_uid}
            _check_owner_mode(st, real, "file", trusted)
            _check_owner_mode(os.fstat(dfd), folder, "folder", trusted)
            _check_ancestors(folder, trusted)
            if st.st_size > MAX_FILE_SIZE:
                raise ConfigError(f"{path}: larger than {MAX_FILE_SIZE} bytes; not a Nextcloud config file")
            _lock_shared(fd, path)
            chunks, size = [], 0
            while size <= MAX_FILE_SIZE:
                chunk = os.read(fd, MAX_FILE_SIZE + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks), trusted
        finally:
            os.close(fd)  # also releases the lock
    finally:
        os.close(dfd)


def _lock_shared(fd: int, path: str) -> None:
    """flock(LOCK_SH) as Config::readData does, so a file Nextcloud is rewriting
    (it truncates, then writes, under LOCK_EX) is never read half-written."""
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return  # no flock on this filesystem (Nextcloud would throw): read unlocked
            if time.monotonic() > deadline:
                raise ConfigError(f"{path} stayed locked by a writer for {_LOCK_WAIT:.0f} s") from None
            time.sleep(0.05)


def natsort_key(name: str | bytes) -> Any:
    """Sort key giving PHP's natsort() order (strnatcmp_ex, case-sensitive)."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    return functools.cmp_to_key(_strnatcmp)(raw)


def _strnatcmp(a: bytes, b: bytes) -> int:
    """PHP's ext/standard/strnatcmp.c::strnatcmp_ex, byte for byte (reads past the end
    see NUL, as the C code does on zend_strings)."""
    alen, blen = len(a), len(b)
    if alen == 0 or blen == 0:
        return 0 if alen == blen else (1 if alen > blen else -1)

    def at(s: bytes, i: int) -> int:
        return s[i] if i < len(s) else 0

    def digit(ch: int) -> bool:
        return 48 <= ch <= 57

    ap = bp = 0
    leading = True
    while True:
        ca, cb = at(a, ap), at(b, bp)
        while leading and ca == 48 and ap + 1 < alen and digit(a[ap + 1]):
            ap += 1
            ca = a[ap]
        while leading and cb == 48 and bp + 1 < blen and digit(b[bp + 1]):
            bp += 1
            cb = b[bp]
        leading = False
        while ca in b" \t\n\v\f\r":
            ap += 1
            ca = at(a, ap)
        while cb in b" \t\n\v\f\r":
            bp += 1
            cb = at(b, bp)
        if digit(ca) and digit(cb):
            fractional = ca == 48 or cb == 48
            result, ap, bp = (_compare_left if fractional else _compare_right)(a, ap, b, bp)
            if result:
                return result
            if ap == alen and bp == blen:
                return 0
            if ap == alen:
                return -1
            if bp == blen:
                return 1
            ca, cb = at(a, ap), at(b, bp)
        if ca < cb:
            return -1
        if ca > cb:
            return 1
        ap += 1
        bp += 1
        if ap >= alen and bp >= blen:
            return 0
        if ap >= alen:
            return -1
        if bp >= blen:
            return 1


def _compare_right(a: bytes, ap: int, b: bytes, bp: int) -> tuple[int, int, int]:
    bias = 0
    while True:
        a_end = ap >= len(a) or not 48 <= a[ap] <= 57
        b_end = bp >= len(b) or not 48 <= b[bp] <= 57
        if a_end and b_end:
            return bias, ap, bp
        if a_end:
            return -1, ap, bp
        if b_end:
            return 1, ap, bp
        if a[ap] < b[bp] and not bias:
            bias = -1
        elif a[ap] > b[bp] and not bias:
            bias = 1
        ap += 1
        bp += 1


def _compare_left(a: bytes, ap: int, b: bytes, bp: int) -> tuple[int, int, int]:
    while True:
        a_end = ap >= len(a) or not 48 <= a[ap] <= 57
        b_end = bp >= len(b) or not 48 <= b[bp] <= 57
        if a_end and b_end:
            return 0, ap, bp
        if a_end:
            return -1, ap, bp
        if b_end:
            return 1, ap, bp
        if a[ap] < b[bp]:
            return -1, ap, bp
        if a[ap] > b[bp]:
            return 1, ap, bp
        ap += 1
        bp += 1


def php_array_merge(*arrays: dict[int | str, Any]) -> dict[int | str, Any]:
    """PHP's array_merge(): string keys overwrite in place, integer keys of every
    argument (the first one too) are appended and renumbered from 0."""
    out: dict[int | str, Any] = {}
    index = 0
    for array in arrays:
        for key, value in array.items():
            if isinstance(key, int):
                out[index] = value
                index += 1
            else:
                out[key] = value
    return out


def read_nextcloud_config(path: str) -> PhpConfig:
    """Nextcloud's system config as ``Config::readData`` builds it from ``path`` and
    the ``*.<basename>`` files beside it, each checked (ownership, modes, symlinks)
    and parsed, never executed."""
    path = os.path.abspath(path)
    folder = os.path.realpath(os.path.dirname(path))
    base = os.path.basename(path)
    main, trusted = _read_checked(path, None)
    dfd = _open_dir(folder)
    try:
        _check_owner_mode(os.fstat(dfd), folder, "folder", trusted)
        _check_ancestors(folder, trusted)
        try:
            names = os.listdir(dfd)
        except OSError as exc:
            raise ConfigError(
                f"cannot list {folder} (uid {os.geteuid()}) for the *.{base} files Nextcloud "
                f"also reads: {exc.strerror}"
            ) from None
    finally:
        os.close(dfd)
    suffix = "." + base
    # glob('*.' . base): '*' never matches a leading dot; glob sorts by bytes; natsort
    # (stable since PHP 8) then orders the full paths, as Nextcloud sorts them.
    extra = sorted(
        (
            os.path.join(os.path.dirname(path), n)
            for n in names
            if n.endswith(suffix) and not n.startswith(".")
        ),
        key=os.fsencode,
    )
    extra.sort(key=natsort_key)
    files = [path, *extra]
    merged: dict[int | str, Any] = {}
    for index, file in enumerate(files):
        source = main if index == 0 else _read_checked(file, trusted)[0]
        config = parse_config_php(source, file)
        if config is not None:
            merged = php_array_merge(merged, config)
    return PhpConfig(merged, tuple(files))


# --- PHP's casts and Nextcloud's getters ---------------------------------------------


def php_bool(value: Any) -> bool:
    """PHP's (bool): false only for false, null, 0, 0.0, '', '0' and an empty array;
    the string 'false' is TRUE."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)):
        return value != 0  # NAN != 0 -> true, as in PHP
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, dict):
        return bool(value)
    return True


_NUMERIC_PREFIX = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_IS_NUMERIC = re.compile(
    r"[ \t\n\r\v\f]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\n\r\v\f]*\Z"
)


def _dval_to_lval(d: float, cap: bool) -> int:
    """zend_dval_to_lval (modular, for (int)$float) / _cap (saturating, for strings)."""
    if not math.isfinite(d):
        return 0
    if -(2.0**63) <= d < 2.0**63:
        return int(d)
    if cap:
        return _INT_MAX if d > 0 else _INT_MIN
    dmod = math.fmod(d, 2.0**64)
    if dmod < 0:
        dmod += 2.0**64
    if dmod > _INT_MAX:
        dmod -= 2.0**64
    return int(dmod)


def php_int(value: Any) -> int:
    """PHP 8's (int) cast (leading-numeric strings, '1e3' = 1000, saturating for
    strings, modular for out-of-range floats)."""
    if value is None or value is False:
        return 0
    if value is True:
        return 1
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _dval_to_lval(value, cap=False)
    if isinstance(value, dict):
        return 1 if value else 0
    if isinstance(value, str):
        m = _NUMERIC_PREFIX.match(value)
        if not m:
            return 0
        number = m.group(1)
        if not any(ch in number for ch in ".eE") and len(number.lstrip("+-")) <= 19:
            as_int = int(number)
            if _INT_MIN <= as_int <= _INT_MAX:
                return as_int
        return _dval_to_lval(float(number), cap=True)
    return 0


def php_is_numeric(value: str) -> bool:
    """PHP 8's is_numeric() for a string (whitespace around allowed, no hex)."""
    return bool(_IS_NUMERIC.match(value))


def _php_float_str(x: float, precision: int = 14) -> str:
    """(string)$float with PHP's default precision=14 (zend_gcvt: '1.0E+25', '0.1', '-0')."""
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INF" if x > 0 else "-INF"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    mantissa, exponent = f"{abs(x):.{precision - 1}e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    decpt = int(exponent) + 1
    if (decpt < -3) if decpt < 0 else (decpt > precision):
        e = decpt - 1
        body = f"{digits[0]}.{digits[1:] or '0'}E{'-' if e < 0 else '+'}{abs(e)}"
    elif decpt <= 0:
        body = "0." + "0" * -decpt + digits
    elif len(digits) <= decpt:
        body = digits + "0" * (decpt - len(digits))
    else:
        body = digits[:decpt] + "." + digits[decpt:]
    return sign + body


def php_string(value: Any) -> str:
    """PHP's (string) cast: true '1', false/null '', floats with precision 14,
    arrays 'Array' (PHP warns)."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_float_str(value)
    if isinstance(value, dict):
        return "Array"
    return str(value)


def system_value(data: dict[int | str, Any], key: str, default: Any = "") -> Any:
    """IConfig::getSystemValue: the raw value; default when missing or null (isset)."""
    value = data.get(key)
    return default if value is None else value


def system_value_bool(data: dict[int | str, Any], key: str, default: bool = False) -> bool:
    """IConfig::getSystemValueBool = (bool) getSystemValue(): 'false' reads as true."""
    return php_bool(system_value(data, key, default))


def system_value_int(data: dict[int | str, Any], key: str, default: int = 0) -> int:
    """IConfig::getSystemValueInt = (int) getSystemValue()."""
    return php_int(system_value(data, key, default))


def system_value_string(data: dict[int | str, Any], key: str, default: str = "") -> str:
    """IConfig::getSystemValueString = (string) getSystemValue()."""
    return php_string(system_value(data, key, default))


_HOST_PORT = re.compile(r"(.*):([^\]:]+)$")  # same semantics as PHP's /^(.*):([^\]:]+)$/


def split_dbhost(dbhost: str) -> tuple[str, int | None, str]:
    """ConnectionFactory::splitHostFromPortAndSocket: 'host:3306' -> port,
    'host:/run/x.sock' -> socket, '[::1]:5432' -> ('[::1]', 5432, ''); a bare
    '/path' stays the host (Nextcloud passes it to the driver as is)."""
    m = _HOST_PORT.match(dbhost)
    if not m:
        return dbhost, None, ""
    host, tail = m.group(1), m.group(2)
    if php_is_numeric(tail):
        return host, php_int(tail), ""
    return host, None, tail


class NextcloudSettings(NamedTuple):
    """The keys ncauth uses, interpreted as Nextcloud interprets them (see the table
    in the module docstring). ``dbport`` is absent on purpose: Nextcloud ignores it."""

    dbtype: str  # 'sqlite' already normalised to 'sqlite3'
    dbhost: str  # raw, as in config.php
    db_host: str  # after splitHostFromPortAndSocket (pgsql: [v6] brackets removed)
    db_port: int | None
    db_socket: str
    dbname: str
    dbuser: str
    dbpassword: str
    dbtableprefix: str
    datadirectory: str | None  # None: unset (Nextcloud then uses <server root>/data)
    secret: str
    passwordsalt: str
    hashing_memory_cost: int
    hashing_time_cost: int
    hashing_threads: int
    twofactor_enforced: bool
    twofactor_enforced_groups: tuple[str, ...]
    twofactor_enforced_excluded_groups: tuple[str, ...]
    token_auth_enforced: bool
    allow_user_to_change_display_name: bool


def _groups(data: dict[int | str, Any], key: str) -> tuple[str, ...]:
    value = system_value(data, key, {})
    if isinstance(value, list):  # tolerate callers that converted arrays already
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        raise ConfigError(
            f"Nextcloud config: {key} must be an array of group names "
            f"(it is a {type(value).__name__}; Nextcloud's EnforcementState fails on that too)"
        )
    groups = []
    for item in value.values():
        if isinstance(item, (dict, list)):
            raise ConfigError(f"Nextcloud config: {key} must list group names, not nested arrays")
        groups.append(php_string(item))
    return tuple(groups)


def _twofactor_enforced(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value == "true"  # older MandatoryTwoFactor::getState: === 'true'
    return php_bool(value)  # newest: getSystemValueBool


def nextcloud_settings(data: dict[int | str, Any]) -> NextcloudSettings:
    """Each key ncauth needs, read with the getter (and default) Nextcloud uses."""
    dbtype = php_string(system_value(data, "dbtype", "sqlite"))
    if dbtype == "sqlite":
        dbtype = "sqlite3"
    dbhost = php_string(system_value(data, "dbhost", ""))
    host, port, socket_path = split_dbhost(dbhost)
    if dbtype == "pgsql":
        bracketed = re.fullmatch(r"\[([^\]]+)\]", host)
        if bracketed:
            host = bracketed.group(1)
    threads = max(system_value_int(data, "hashingThreads", 1), 1)
    datadir = system_value(data, "datadirectory", None)
    return NextcloudSettings(
        dbtype=dbtype,
        dbhost=dbhost,
        db_host=host,
        db_port=port,
        db_socket=socket_path,
        dbname=php_string(system_value(data, "dbname", "owncloud")),
        dbuser=php_string(system_value(data, "dbuser", "")),
        dbpassword=php_string(system_value(data, "dbpassword", "")),
        dbtableprefix=php_string(system_value(data, "dbtableprefix", "oc_")),
        datadirectory=None if datadir is None else php_string(datadir),
        secret=system_value_string(data, "secret"),
        passwordsalt=php_string(system_value(data, "passwordsalt", "")),
        hashing_memory_cost=max(system_value_int(data, "hashingMemoryCost", 65536), threads * 8),
        hashing_time_cost=max(system_value_int(data, "hashingTimeCost", 4), 1),
        hashing_threads=threads,
        twofactor_enforced=_twofactor_enforced(data.get("twofactor_enforced")),
        twofactor_enforced_groups=_groups(data, "twofactor_enforced_groups"),
        twofactor_enforced_excluded_groups=_groups(data, "twofactor_enforced_excluded_groups"),
        token_auth_enforced=system_value_bool(data, "token_auth_enforced", False),
        allow_user_to_change_display_name=system_value_bool(data, "allow_user_to_change_display_name", True),
    )
