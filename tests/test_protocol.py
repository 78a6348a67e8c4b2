"""Dovecot tab-escaping (src/lib/strescape.c), pinned for the Python and the Lua copy by
one table of vectors, the daemon protocol's request and reply lines, and the
checkpassword reply's field order."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.require import unavailable

from ncauth.checkpassword import encode_fields, reply_fields
from ncauth.protocol import Listed, MalformedRequest, Reply, Request, tab_escape, tab_unescape

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "tabescape.json").read_text())
ESCAPE = [(bytes.fromhex(v["raw"]).decode(), bytes.fromhex(v["escaped"]).decode()) for v in VECTORS["escape"]]
UNESCAPE = ESCAPE + [
    (bytes.fromhex(v["raw"]).decode(), bytes.fromhex(v["escaped"]).decode()) for v in VECTORS["unescape_only"]
]


@pytest.mark.parametrize(("raw", "escaped"), ESCAPE)
def test_escape_like_dovecot(raw: str, escaped: str) -> None:
    assert tab_escape(raw) == escaped


@pytest.mark.parametrize(("raw", "escaped"), UNESCAPE)
def test_unescape_like_dovecot(raw: str, escaped: str) -> None:
    assert tab_unescape(escaped) == raw


LUA_CHECK = r"""
local path, vectors = arg[1], arg[2]
-- the script's own locals, reached by appending to its chunk (Dovecot never sees this)
local source = assert(io.open(path)):read("a")
local m = assert(load(source .. "\nreturn { esc = tab_escape, unesc = tab_unescape }", "=ncauth.lua"))()
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
for line in io.lines(vectors) do
  local kind, a = line:match("^(%a+) (%x*)$")
  local out = kind == "escape" and m.esc(unhex(a)) or m.unesc(unhex(a))
  print(hex(out))
end
"""


def test_lua_copy_gives_the_same_answers(tmp_path: Path) -> None:
    """ncauth.lua carries its own tab-escaping (Dovecot's Lua cannot import Python): it must
    answer every vector as protocol.py does."""
    lua = shutil.which("lua5.4")
    if lua is None:
        unavailable("lua5.4 is not installed (Debian package lua5.4)")
    lines = [f"escape {r.encode().hex()}" for r, _ in ESCAPE] + [
        f"unescape {e.encode().hex()}" for _, e in UNESCAPE
    ]
    (tmp_path / "vectors").write_text("\n".join(lines) + "\n")
    (tmp_path / "check.lua").write_text(LUA_CHECK)
    proc = subprocess.run(
        [lua, str(tmp_path / "check.lua"), str(ROOT / "ncauth" / "ncauth.lua"), str(tmp_path / "vectors")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = [bytes.fromhex(h).decode() for h in proc.stdout.split("\n")[:-1]]
    assert got == [e for _, e in ESCAPE] + [r for r, _ in UNESCAPE]


def test_nul_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="NUL"):
        tab_escape("a\x00b")


@given(st.text().filter(lambda s: "\x00" not in s))
def test_round_trip(value: str) -> None:
    escaped = tab_escape(value)
    assert not any(c in escaped for c in "\t\r\n")
    assert tab_unescape(escaped) == value


def test_reply_starts_with_user_and_prefixes_userdb_fields() -> None:
    fields = reply_fields("a@b.c", {"uid": "vmail", "home": "/var/vmail/b.c/a"})
    assert encode_fields(fields) == "user=a@b.c\tuserdb_uid=vmail\tuserdb_home=/var/vmail/b.c/a"


@given(
    st.sampled_from(["AUTH", "LOOKUP"]),
    st.text(alphabet=st.characters(blacklist_characters="\x00\t", blacklist_categories=("Cs",)), max_size=20),
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1),
    st.binary().filter(lambda b: b"\x00" not in b),
)
def test_request_round_trip(command: str, rid: str, user: str, password: bytes) -> None:
    password_or_none = password if command == "AUTH" else None
    req = Request(command, rid, user, password_or_none, {"service": "imap", "rip": "198.51.100.7"})
    assert Request.parse(req.encode()) == req


@pytest.mark.parametrize(
    ("line", "rid", "reason"),
    [
        (b"AUTH\t7\talice@example.org\n", "7", "malformed or unknown request 'AUTH'"),
        (b"FROB\t8\n", "8", "malformed or unknown request 'FROB'"),
        (b"LOOKUP\n", "", "malformed or unknown request 'LOOKUP'"),
        (b"AUTH\t9\x00\ta\tb\n", "9", "malformed request: NUL byte"),
    ],
)
def test_malformed_requests_name_their_id(line: bytes, rid: str, reason: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        Request.parse(line)
    assert (caught.value.rid, caught.value.reason) == (rid, reason)


def test_reply_round_trip_and_garbage() -> None:
    reply = Reply("OK", "3", {"user": "alice@example.org", "userdb_home": "/m/a\tb"})
    assert Reply.parse(reply.encode()) == reply
    assert Reply.parse(b"MAYBE\t3\n") is None and Reply.parse(b"OK\n") is None


def test_users_request_and_list_lines() -> None:
    """USERS carries only its id; a list line carries one escaped name."""
    assert Request.parse(b"USERS\t7\n") == Request("USERS", "7")
    assert Request("USERS", "7").encode() == b"USERS\t7\n"
    listed = Listed("7", "odd\tname@example.org")
    assert listed.encode() == b"USER\t7\todd\x01tname@example.org\n"
    assert Listed.parse(listed.encode()) == listed
    assert Listed.parse(b"OK\t7\tcount=1\n") is None and Listed.parse(b"USER\t7\n") is None
    assert Reply.parse(listed.encode()) is None  # never taken for the answer that ends the list
