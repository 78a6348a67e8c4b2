"""Postfix's socketmap protocol (socketmap_table(5), src/global/dict_sockmap.c): the codec,
the incremental reader against hostile byte streams, and one real connection served by
:func:`ncauth.socketmap.serve_connection`. Postfix's own client is in test_postfix.py."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncauth.socketmap import (
    MAX_REASON,
    MAX_REPLY,
    MAX_REQUEST,
    BadRequest,
    FramingError,
    NetstringDecoder,
    ProtocolError,
    Reply,
    Request,
    Status,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    netstring,
    parse_request,
    serve_connection,
)

FUZZ = settings(max_examples=300, deadline=None, derandomize=True)

map_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
keys = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=300)


# --- netstrings --------------------------------------------------------------------------


def test_netstring_examples_from_the_definition() -> None:
    # cr.yp.to/proto/netstrings.txt: "hello world!" is 12:hello world!, ; "" is 0:,
    assert netstring(b"hello world!") == b"12:hello world!,"
    assert netstring(b"") == b"0:,"
    assert NetstringDecoder().feed(b"12:hello world!,0:,") == [b"hello world!", b""]


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8), st.data())
def test_decoder_reassembles_any_split(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(netstring(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = NetstringDecoder()
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert got == payloads
    assert not decoder.pending


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"x:abc,", "not a decimal number"),
        (b"-1:,", "not a decimal number"),
        (b" 3:abc,", "not a decimal number"),
        (b"3 :abc,", "not a decimal number"),
        (b"0x3:abc,", "not a decimal number"),
        (b"\xd9\xa3:abc,", "not a decimal number"),  # Arabic-Indic digit three
        (b":abc,", "without a length"),
        (b"03:abc,", "leading zero"),
        (b"3:abcd", "comma"),
        (b"3:abc;", "comma"),
        (b"3:ab\x00c", "comma"),
        (b"99999999999999999999999999999999:", "longer than"),
        (b"99999999999999999999", "longer than"),  # refused before the colon arrives
        (b"%d:" % (MAX_REQUEST + 1), "longer than"),
    ],
)
def test_decoder_refuses_what_is_not_a_netstring(stream: bytes, message: str) -> None:
    decoder = NetstringDecoder()
    with pytest.raises(FramingError, match=message):
        decoder.feed(stream)
    # the stream cannot be resynchronised: the decoder stays failed
    assert decoder.failed is not None
    with pytest.raises(FramingError):
        decoder.feed(b"3:abc,")


def test_a_huge_length_prefix_is_refused_without_buffering() -> None:
    decoder = NetstringDecoder()
    with pytest.raises(FramingError):
        decoder.feed(b"9" * 10)
    # it failed on the length alone; nothing of a would-be body was held
    assert not decoder.pending


def test_frame_size_limit_is_inclusive() -> None:
    exact = b"a" * MAX_REQUEST
    assert NetstringDecoder().feed(netstring(exact)) == [exact]
    with pytest.raises(FramingError):
        NetstringDecoder().feed(netstring(exact + b"a"))


def test_good_frames_before_a_bad_one_are_handed_out() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"1:a,1:b,zz") == [b"a", b"b"]
    assert isinstance(decoder.failed, FramingError)


@FUZZ
@given(st.binary(max_size=64))
def test_decoder_never_fails_otherwise(garbage: bytes) -> None:
    decoder = NetstringDecoder(max_size=32)
    try:
        for frame in decoder.feed(garbage):
            assert len(frame) <= 32
    except FramingError:
        pass
    assert len(decoder._buffer) <= 32 + 3  # one bounded frame at most


# --- requests ------------------------------------------------------------------------------


@FUZZ
@given(map_names, keys)
def test_request_round_trip(name: str, key: str) -> None:
    assert decode_request(encode_request(name, key)) == Request(name, key)


def test_request_key_keeps_its_spaces() -> None:
    # Postfix hands over the unquoted form of "john doe"@example.org
    assert decode_request(b"31:recipients john doe@example.org,") == Request(
        "recipients", "john doe@example.org"
    )
    assert decode_request(b"11:recipients ,") == Request("recipients", "")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"recipients", "not 'name key'"),
        (b"", "not 'name key'"),
        (b" a@b.c", "map name"),
        (b"recip\x01ents a@b.c", "map name"),
        (b"r\xc3\xa9cipients a@b.c", "map name"),
        (b"recipients a\x00b@c.d", "NUL"),
        (b"recipients \xff@b.c", "not UTF-8"),
        (b"recipients \xed\xa0\x80@b.c", "not UTF-8"),  # an encoded surrogate
    ],
)
def test_bad_requests(payload: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_request(payload)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        decode_request(netstring(payload))  # type: ignore[arg-type]


def test_decode_request_wants_exactly_one_frame() -> None:
    for data in (b"", b"3:a b", b"3:a b,3:a b,", b"3:a b,x"):
        with pytest.raises(ProtocolError):
            decode_request(data)


@FUZZ
@given(st.binary(max_size=80))
def test_hostile_requests_raise_only_protocol_errors(data: bytes) -> None:
    try:
        request = decode_request(data)
    except ProtocolError:
        return
    assert request.name and " " not in request.name


# --- replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Reply.ok("alice@example.org"), b"20:OK alice@example.org,"),
        (Reply.notfound(), b"9:NOTFOUND ,"),
        (Reply.temp("database unavailable"), b"25:TEMP database unavailable,"),
        (Reply.timeout("database slow"), b"21:TIMEOUT database slow,"),
        (Reply.perm("no such map"), b"16:PERM no such map,"),
        (Reply.temp(""), b"5:TEMP ,"),
    ],
)
def test_reply_wire_format(reply: Reply, wire: bytes) -> None:
    assert encode_reply(reply) == wire
    assert decode_reply(wire) == reply


@FUZZ
@given(st.sampled_from(list(Status)), keys)
def test_reply_round_trip(status: Status, data: str) -> None:
    make = {
        Status.OK: Reply.ok,
        Status.TEMP: Reply.temp,
        Status.TIMEOUT: Reply.timeout,
        Status.PERM: Reply.perm,
    }
    if status is Status.NOTFOUND:
        reply = Reply.notfound()
    elif status is Status.OK and not data:
        return
    else:
        reply = make[status](data)
    assert decode_reply(encode_reply(reply)) == reply


def test_empty_or_nul_ok_data_is_refused() -> None:
    # maps.c maps_find(): an empty result is a lookup error, not a hit
    with pytest.raises(ValueError, match="non-empty"):
        Reply.ok("")
    with pytest.raises(ValueError, match="NUL"):
        Reply.ok("a\x00b")
    with pytest.raises(ValueError):
        encode_reply(Reply(Status.OK, ""))


def test_reply_size_limit_is_postfixs() -> None:
    fits = "x" * (MAX_REPLY - len("OK "))
    assert len(encode_reply(Reply.ok(fits))) == len(f"{MAX_REPLY}:,") + MAX_REPLY
    with pytest.raises(ValueError, match="exceeds"):
        encode_reply(Reply.ok(fits + "x"))
    with pytest.raises(ValueError):
        encode_reply(Reply.ok("\udcff"))  # a lone surrogate cannot be sent


def test_reasons_are_one_printable_line_postfix_can_show() -> None:
    reply = Reply.temp("db\nerror\x00\x1b[31m" + "x" * 500)
    assert reply.data.startswith("db?error??[31m")
    assert len(reply.data) == MAX_REASON
    assert reply.data.isprintable()


def test_bare_ok_is_not_a_hit() -> None:
    # dict_sockmap.c: split_at(buf, ' ') finds no value, so Postfix reads "OK" as not found
    with pytest.raises(ProtocolError, match="not found"):
        decode_reply(b"2:OK,")
    assert decode_reply(b"8:NOTFOUND,") == Reply.notfound()
    for bad in (b"5:MAYBE,", b"6:MAYBE ,", b"4:TEMP,"):
        with pytest.raises(ProtocolError):
            decode_reply(bad)


# --- one real connection ------------------------------------------------------------------


async def _serve(
    path: Path,
    handler: Callable[[Request], Awaitable[Reply]],
    client: Callable[[socket.socket], None],
    **kw: float,
) -> list[Request]:
    """Serve *path* with *handler* while *client* (blocking, in a thread) talks to it."""
    seen: list[Request] = []

    async def recording(request: Request) -> Reply:
        seen.append(request)
        return await handler(request)

    server = await asyncio.start_unix_server(
        lambda r, w: serve_connection(r, w, recording, **kw),  # type: ignore[arg-type]
        path=str(path),
    )
    try:

        def run() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(str(path))
                client(s)

        await asyncio.to_thread(run)
    finally:
        server.close()
        await server.wait_closed()
    return seen


def _recv_until_eof(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _recv_replies(s: socket.socket, count: int) -> list[Reply]:
    decoder = NetstringDecoder(MAX_REPLY + 16)
    got: list[bytes] = []
    while len(got) < count:
        chunk = s.recv(65536)
        assert chunk, f"connection closed after {len(got)} replies"
        got += decoder.feed(chunk)
    return [decode_reply(netstring(p)) for p in got]


async def _directory(request: Request) -> Reply:
    if request.key == "boom@example.org":
        raise RuntimeError("database went away")
    if request.key == "alice@example.org":
        return Reply.ok("alice")
    return Reply.notfound()


@pytest.fixture(scope="module")
def sock_dir() -> Iterator[Path]:
    # AF_UNIX paths are short; pytest's tmp_path may be too long
    d = Path(tempfile.mkdtemp(prefix="ncauth-sm-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: Path) -> Path:
    return sock_dir / "s"


def test_one_connection_carries_many_requests(sock_path: Path) -> None:
    def client(s: socket.socket) -> None:
        s.sendall(encode_request("recipients", "alice@example.org"))
        assert _recv_replies(s, 1) == [Reply.ok("alice")]
        s.sendall(encode_request("recipients", "nobody@example.org"))
        assert _recv_replies(s, 1) == [Reply.notfound()]
        # pipelined, in one write, split mid-frame on the next
        both = encode_request("recipients", "alice@example.org") + encode_request(
            "senders", "boom@example.org"
        )
        s.sendall(both[:7])
        s.sendall(both[7:])
        assert _recv_replies(s, 2) == [Reply.ok("alice"), Reply.temp("internal error (RuntimeError)")]

    seen = asyncio.run(_serve(sock_path, _directory, client))
    assert [r.key for r in seen] == [
        "alice@example.org",
        "nobody@example.org",
        "alice@example.org",
        "boom@example.org",
    ]


def test_a_bad_request_gets_perm_and_the_connection_goes_on(sock_path: Path) -> None:
    def client(s: socket.socket) -> None:
        s.sendall(netstring(b"recipients \xff@example.org"))
        assert _recv_replies(s, 1) == [Reply.perm("request is not UTF-8")]
        s.sendall(encode_request("recipients", "alice@example.org"))
        assert _recv_replies(s, 1) == [Reply.ok("alice")]

    asyncio.run(_serve(sock_path, _directory, client))


@pytest.mark.parametrize("garbage", [b"99999999999999999999999:", b"5:abc", b"GET / HTTP/1.0\r\n\r\n"])
def test_a_broken_stream_gets_perm_and_is_closed(sock_path: Path, garbage: bytes) -> None:
    def client(s: socket.socket) -> None:
        s.sendall(encode_request("recipients", "alice@example.org") + garbage)
        if garbage == b"5:abc":
            s.sendall(b"de;")  # the frame is complete, the comma is not there
        replies = NetstringDecoder(MAX_REPLY).feed(_recv_until_eof(s))
        assert decode_reply(netstring(replies[0])) == Reply.ok("alice")
        assert decode_reply(netstring(replies[1])).status is Status.PERM
        assert len(replies) == 2

    seen = asyncio.run(_serve(sock_path, _directory, client))
    assert len(seen) == 1


def test_a_handler_that_answers_nonsense_yields_temp(sock_path: Path) -> None:
    async def broken(request: Request) -> Reply:
        return Reply(Status.OK, "")  # bypasses Reply.ok: must not reach Postfix as a hit

    def client(s: socket.socket) -> None:
        s.sendall(encode_request("recipients", "alice@example.org"))
        assert _recv_replies(s, 1) == [Reply.temp("internal error (ValueError)")]

    asyncio.run(_serve(sock_path, broken, client))


def test_an_idle_connection_is_closed(sock_path: Path) -> None:
    def client(s: socket.socket) -> None:
        s.sendall(b"5:recip")  # half a request, then silence
        assert _recv_until_eof(s) == b""

    asyncio.run(_serve(sock_path, _directory, client, idle_timeout=0.3))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=200))
def test_hostile_streams_never_crash_the_server(sock_dir: Path, garbage: bytes) -> None:

    def client(s: socket.socket) -> None:
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)
        payloads = NetstringDecoder(MAX_REPLY).feed(_recv_until_eof(s))
        for p in payloads:
            decode_reply(netstring(p))  # every answer is a well-formed reply

    asyncio.run(_serve(sock_dir / "h", _directory, client))
