"""Dovecot tab-escaping (src/lib/strescape.c) and the reply field order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncauth.protocol import encode_fields, reply_fields, tab_escape, tab_unescape


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a\tb", "a\x01tb"),
        ("cr\rlf\n", "cr\x01rlf\x01n"),
        ("\x01", "\x011"),
        ("\x01t", "\x011t"),  # an escape byte followed by 't' must not turn into TAB
        ("ünï ✓", "ünï ✓"),
    ],
)
def test_escape_like_dovecot(raw: str, escaped: str) -> None:
    assert tab_escape(raw) == escaped
    assert tab_unescape(escaped) == raw


def test_nul_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        tab_escape("a\x00b")


@given(st.text().filter(lambda s: "\x00" not in s))
def test_round_trip(value: str) -> None:
    escaped = tab_escape(value)
    assert not any(c in escaped for c in "\t\r\n")
    assert tab_unescape(escaped) == value


def test_reply_starts_with_user_and_prefixes_userdb_fields() -> None:
    fields = reply_fields("a@b.c", {"uid": "vmail", "home": "/var/vmail/b.c/a"})
    assert encode_fields(fields) == "user=a@b.c\tuserdb_uid=vmail\tuserdb_home=/var/vmail/b.c/a"
