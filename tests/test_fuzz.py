"""Property-based fuzzing (hypothesis, fixed seed and budget here; NCAUTH_FUZZ_EXAMPLES
raises the budget for longer runs) of everything that parses outside input: the fd-3
request reader, the daemon's line protocol, the config loader, and the whole
checkpassword program through its real process boundary."""

from __future__ import annotations

import os
import tomllib

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from support import population
from support.checkpassword import checkpassword
from support.nextcloud import NextcloudDB

from ncauth import checkpassword as cp
from ncauth import config as cfg
from ncauth.errors import ConfigError
from ncauth.protocol import decode_line, encode_line, key_values

BUDGET = int(os.environ.get("NCAUTH_FUZZ_EXAMPLES", "0"))


def budget(default: int) -> settings:
    return settings(
        max_examples=BUDGET or default,
        deadline=None,
        derandomize=not BUDGET,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def _read_via_pipe(data: bytes) -> tuple[bytes, bytes]:
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        w = -1
        return cp.read_request(r, timeout=1)
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


@given(st.binary(max_size=700))
@budget(400)
def test_fd3_reader_only_answers_or_refuses(data: bytes) -> None:
    """Any bytes: either the first three NUL-terminated fields (within 512 bytes), or
    ProtocolError; never another exception, never a field with a NUL in it."""
    try:
        user, password = _read_via_pipe(data)
    except cp.ProtocolError:
        assert data[:512].count(b"\0") < 3
        return
    assert data[:512].count(b"\0") >= 3
    assert b"\0" not in user + password
    assert data.startswith(user + b"\0" + password + b"\0")


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\0" not in b), min_size=1, max_size=8))
@budget(400)
def test_protocol_carries_bytes_exactly(raw: list[bytes]) -> None:
    """Fields are bytes from Dovecot (a password need not be UTF-8): decoded with
    surrogateescape, sent, received and encoded again, they are the same bytes."""
    line = encode_line(*(b.decode("utf-8", "surrogateescape") for b in raw))
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert _as_bytes(decode_line(line)) == raw


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00")), max_size=4))
@budget(300)
def test_protocol_encoder_takes_any_text(fields: list[str]) -> None:
    """Any text makes one well-formed line (one field per TAB-separated slot, one LF at
    the end, no CR: what a user types cannot add fields or lines to an answer) that
    decodes to the same fields, byte for byte; text with a lone surrogate that is no
    escaped byte travels backslash-escaped instead of failing."""
    line = encode_line(*fields)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line
    assert line.count(b"\t") == max(len(fields) - 1, 0)
    try:
        sent = _as_bytes(fields or [""])
    except UnicodeEncodeError:
        assert decode_line(line) == [f.encode("utf-8", "backslashreplace").decode() for f in fields]
    else:
        assert _as_bytes(decode_line(line)) == sent


@given(st.binary(max_size=300))
@budget(400)
def test_protocol_decoder_takes_any_bytes(line: bytes) -> None:
    """Any line decodes to one field per TAB-separated slot, and the daemon can send
    back what it read (a request id, a user name) byte for byte; only a NUL cannot
    travel, and encoding refuses it rather than cut the field short. ``key_values``
    keeps each key's last value."""
    line = line.replace(b"\n", b"")
    fields = decode_line(line)
    assert len(fields) == line.count(b"\t") + 1
    if b"\0" in line:
        with pytest.raises(ValueError, match="NUL"):
            encode_line(*fields)
    else:
        # compared as bytes: undecodable bytes travel as surrogate escapes, and a pair of
        # them may come back as the character their bytes spell (the bytes are the same)
        assert _as_bytes(decode_line(encode_line(*fields))) == _as_bytes(fields)
    pairs = key_values(fields)
    for field in fields:
        key = field.partition("=")[0]
        last = next(f for f in reversed(fields) if f.partition("=")[0] == key)
        assert pairs[key] == last.partition("=")[2]
    assert set(pairs) == {f.partition("=")[0] for f in fields}


def _as_bytes(fields: list[str]) -> list[bytes]:
    return [f.encode("utf-8", "surrogateescape") for f in fields]


_toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "nextcloud",
        "accounts",
        "userdb",
        "daemon",
        "log",
        "database_url",
        "domains",
        "match",
        "two_factor",
        "trusted_networks",
        "socket",
        "level",
        "table_prefix",
        "secret",
        "x",
    ]
)


@given(
    st.dictionaries(
        _keys, st.one_of(_toml_values, st.dictionaries(_keys, _toml_values, max_size=6)), max_size=5
    )
)
@budget(500)
def test_config_loader_only_raises_config_errors(raw: dict[str, object]) -> None:
    """Whatever a TOML document holds, parse() returns a Config or raises ConfigError
    naming the file."""
    _config_or_error_naming_the_file(raw, "/etc/ncauth/fuzz.toml")


@given(st.text(max_size=200))
@budget(200)
def test_config_text_never_crashes(text: str) -> None:
    """Any text: TOML refuses it, or parse() returns a Config or raises ConfigError naming
    the file (which is what the admin sees, and why checkpassword exits 111)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    _config_or_error_naming_the_file(raw, "/x.toml")


def _config_or_error_naming_the_file(raw: dict[str, object], path: str) -> None:
    try:
        config = cfg.parse(raw, path)
    except ConfigError as exc:
        assert str(exc).startswith(path) or "config_php" in str(exc), exc
    else:
        assert isinstance(config, cfg.Config) and config.path == path
        assert config.nextcloud.database_urls  # a Config always knows where to look


# --- through the process boundary --------------------------------------------------

VALID = {
    (population.A.encode(), population.P.encode()),
    (population.A.encode(), population.token("alice-valid").encode()),
}


@pytest.fixture(scope="module")
def fuzz_config(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    db = NextcloudDB(f"sqlite:///{tmp / 'nc.db'}", "oc_", tmp).populate()
    yield db.write_config(population.STANDARD_CONFIG)
    db.close()


_fd3 = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda u, p, rest: u + b"\0" + p + b"\0\0" + rest,
        st.sampled_from([population.A.encode(), b"alice", b"ALICE@EXAMPLE.ORG", b"", b"\xff@example.org"]),
        st.sampled_from([population.P.encode(), b"", b"wrong", population.P.encode() + b"\0", b"\xff\xfe"]),
        st.binary(max_size=20),
    ),
)


@seed(20261125)
@given(data=_fd3, lookup=st.booleans())
@budget(40)
def test_checkpassword_process_exit_codes(fuzz_config, data: bytes, lookup: bool) -> None:
    """Random fd-3 bytes into the installed program: only 0/1/2/3/111, and 0 only for
    valid credentials."""
    r = checkpassword(fuzz_config, data, {"AUTHORIZED": "1"} if lookup else {})
    assert r.code in ((2, 3, 111) if lookup else (0, 1, 111)), r.stderr
    assert "Traceback" not in r.stderr
    if r.code == 0:
        user, password = data.split(b"\0")[:2]
        assert (user.lower(), password) in {(u.lower(), p) for u, p in VALID}
    if r.code in (0, 2):
        assert r.reply.startswith(b"user=alice@example.org\t")
    else:
        assert r.reply == b""
