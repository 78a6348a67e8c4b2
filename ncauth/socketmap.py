"""Postfix's socketmap protocol, server side: netstring framing, requests, replies.

Why: Postfix asks ncauth for recipients (``virtual_mailbox_maps``) and sender owners
(``smtpd_sender_login_maps``) through ``socketmap:unix:PATH:NAME`` tables. The wire format
is Postfix's ``socketmap_table(5)``; the behaviour below was read from its client,
``src/global/dict_sockmap.c`` (``dict_sockmap_lookup``) and ``src/global/maps.c``
(``maps_find``), Postfix 3.7:

- Every request and reply is one netstring, ``<len>:<bytes>,`` (cr.yp.to/proto/netstrings.txt:
  decimal length, no leading zeros unless the string is empty).
- Request: ``<name> <key>``, where *name* is the last ``:``-field of the map spec. Postfix
  splits nothing out of the key, which may itself hold spaces (a quoted local part arrives
  unquoted), so only the first space separates. Keys are lower-cased by Postfix for the maps
  that fold case (``DICT_FLAG_FOLD_MUL``); they never contain NUL (C strings).
- Reply: Postfix splits at the first space and compares the word before it:
  ``OK <data>`` found; ``NOTFOUND `` not found; ``TEMP <reason>`` and ``TIMEOUT <reason>`` a
  temporary lookup error (``DICT_ERR_RETRY``: smtpd answers 4xx); ``PERM <reason>`` a
  configuration error (``DICT_ERR_CONFIG``; smtpd still answers 4xx "Server configuration
  error"); any other word is treated as a temporary error. A bare ``OK`` without the space
  is read as *not found*, so :func:`encode_reply` always writes the space.
- An ``OK`` with empty data is not a hit: ``maps_find`` logs "returns an empty string result"
  and fails the lookup as a temporary error. :meth:`Reply.ok` therefore refuses empty data,
  and data holding NUL (Postfix would silently cut it there).
- The reply payload may be at most 100000 bytes (``DICT_SOCKMAP_DEF_MAX_REPLY``; not a
  setting in 3.7: the man page's BUGS says the limits are not configurable). Longer ones
  fail the lookup on Postfix's side; :func:`encode_reply` refuses them.
- Postfix keeps the connection and sends request after request (``auto_clnt``: closes it
  after 10 s idle or 100 s of age, waits up to 100 s for a reply). If the server closed it
  meanwhile, Postfix retries once on a fresh connection, so a server-side idle timeout
  above 10 s is invisible to Postfix; :data:`IDLE_TIMEOUT` is that timeout.
- The man page's SECURITY section: the connection is not authenticated. ncauth serves it on
  a Unix socket and checks the peer itself (SO_PEERCRED), as its auth socket does.

Hostile input: a request is at most :data:`MAX_REQUEST` bytes (Postfix's smtpd reads SMTP
command lines of at most ``line_length_limit`` = 2048 bytes, so no real key comes near it);
a longer length prefix is refused before anything is buffered. A stream that is not a
netstring cannot be resynchronised: :class:`FramingError`, answer ``PERM`` and close. A
well-framed request with a bad payload (no space, NUL, not UTF-8, empty or odd map name)
is :class:`BadRequest`: answer ``PERM`` and read on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_REPLY",
    "MAX_REQUEST",
    "BadRequest",
    "FramingError",
    "Handler",
    "NetstringDecoder",
    "ProtocolError",
    "Reply",
    "Request",
    "Status",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "netstring",
    "parse_reply",
    "parse_request",
    "serve_connection",
]

#: Postfix's reply size limit, payload bytes without the netstring frame (dict_sockmap.c).
MAX_REPLY = 100_000
#: Our request size limit, payload bytes (see the module docstring).
MAX_REQUEST = 4096
#: Seconds a connection may sit without a complete request before the server closes it.
#: Postfix closes its side after 10 s idle and reconnects transparently, so this only
#: bounds clients that are not Postfix.
IDLE_TIMEOUT = 60.0
#: Postfix shows at most 200 characters of a TEMP/PERM reason (``%.200s``).
MAX_REASON = 200

_READ_CHUNK = 4096


class ProtocolError(ValueError):
    """Input that is not the socketmap protocol. ``str(exc)`` is safe to send back."""


class FramingError(ProtocolError):
    """The byte stream is not (or no longer) a sequence of netstrings: close it."""


class BadRequest(ProtocolError):
    """One well-framed request whose payload is not ``name key``: answer PERM, go on."""


class Status(enum.Enum):
    """The reply words of socketmap_table(5)."""

    OK = "OK"  # data found
    NOTFOUND = "NOTFOUND"  # no data, no error
    TEMP = "TEMP"  # temporary error: Postfix answers 4xx, the sender retries
    TIMEOUT = "TIMEOUT"  # the same, reported as a timeout
    PERM = "PERM"  # "permanent" = configuration error; smtpd still answers 4xx


@dataclass(frozen=True, slots=True)
class Request:
    """One lookup: the map's socketmap *name* and the *key* Postfix looks up."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer. Build it with the class methods, which enforce what Postfix accepts."""

    status: Status
    data: str = ""

    @classmethod
    def ok(cls, data: str) -> Reply:
        """Found, with *data*: non-empty (Postfix treats empty data as a lookup error)
        and without NUL (Postfix would cut the value there)."""
        if not data:
            raise ValueError("socketmap OK needs non-empty data (Postfix fails the lookup on an empty one)")
        if "\x00" in data:
            raise ValueError("socketmap OK data cannot hold NUL")
        return cls(Status.OK, data)

    @classmethod
    def notfound(cls) -> Reply:
        return cls(Status.NOTFOUND)

    @classmethod
    def temp(cls, reason: str) -> Reply:
        return cls(Status.TEMP, _clean_reason(reason))

    @classmethod
    def timeout(cls, reason: str) -> Reply:
        return cls(Status.TIMEOUT, _clean_reason(reason))

    @classmethod
    def perm(cls, reason: str) -> Reply:
        return cls(Status.PERM, _clean_reason(reason))


#: What the server does with a request; async because decisions run in worker threads.
Handler = Callable[[Request], Awaitable[Reply]]


def _clean_reason(reason: str) -> str:
    """A reason Postfix logs readably: printable, one line, at most MAX_REASON characters.
    Never raises, so that error paths cannot fail in turn."""
    text = "".join(c if c.isprintable() else "?" for c in reason)
    return text[:MAX_REASON]


# --- netstrings ------------------------------------------------------------------------


def netstring(payload: bytes) -> bytes:
    """*payload* framed as one netstring."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Incremental, bounded netstring parser (sans I/O): feed bytes, get whole payloads.

    Never buffers more than one frame of at most *max_size* bytes plus its prefix: the
    length prefix is checked digit by digit, so ``99999999999…`` fails at once. After a
    :class:`FramingError` the decoder stays failed (the stream cannot be resynchronised).
    """

    def __init__(self, max_size: int = MAX_REQUEST) -> None:
        self.max_size = max_size
        self._max_digits = len(str(max_size))
        self._buffer = bytearray()
        self._failed: FramingError | None = None

    @property
    def failed(self) -> FramingError | None:
        """The framing error that ended this stream, if any."""
        return self._failed

    @property
    def pending(self) -> bool:
        """True while a frame has begun but is not complete (EOF now would cut it)."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by *data*, in order. Raises :class:`FramingError`."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        frames: list[bytes] = []
        try:
            while True:
                frame = self._next_frame()
                if frame is None:
                    return frames
                frames.append(frame)
        except FramingError as exc:
            self._failed = exc
            self._buffer.clear()
            if frames:  # hand out the good frames first; :attr:`failed` tells the rest
                return frames
            raise

    def _next_frame(self) -> bytes | None:
        buf = self._buffer
        colon = buf.find(b":", 0, self._max_digits + 1)
        digits = bytes(buf[: colon if colon >= 0 else self._max_digits + 1])
        if digits and not digits.isdigit():
            raise FramingError("netstring length is not a decimal number")
        if colon < 0:
            if len(digits) > self._max_digits:
                raise FramingError(f"netstring longer than {self.max_size} bytes")
            return None
        if not digits:
            raise FramingError("netstring without a length")
        if len(digits) > 1 and digits[0:1] == b"0":
            raise FramingError("netstring length with a leading zero")
        size = int(digits)
        if size > self.max_size:
            raise FramingError(f"netstring longer than {self.max_size} bytes")
        end = colon + 1 + size
        if len(buf) <= end:
            return None
        if buf[end] != ord(","):
            raise FramingError("netstring does not end with a comma")
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        return payload


def _single_frame(data: bytes, max_size: int) -> bytes:
    """The payload of *data*, which must be exactly one netstring."""
    decoder = NetstringDecoder(max_size)
    frames = decoder.feed(data)
    if len(frames) != 1 or decoder.pending or decoder.failed is not None:
        raise FramingError("expected exactly one netstring")
    return frames[0]


# --- requests (server reads, Postfix writes) -----------------------------------------------


def encode_request(name: str, key: str) -> bytes:
    """What Postfix sends for a lookup of *key* in socketmap *name* (for tests and clients)."""
    return netstring(f"{name} {key}".encode())


def parse_request(payload: bytes) -> Request:
    """A request payload (``name key``) as a :class:`Request`. Raises :class:`BadRequest`."""
    if b"\x00" in payload:
        raise BadRequest("request holds a NUL byte")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not UTF-8") from None
    name, space, key = text.partition(" ")
    if not space:
        raise BadRequest("request is not 'name key'")
    if not name or not (name.isascii() and name.isprintable()):
        raise BadRequest("request map name is empty or not printable ASCII")
    return Request(name, key)


def decode_request(data: bytes, max_size: int = MAX_REQUEST) -> Request:
    """One complete request netstring as a :class:`Request`. Raises :class:`ProtocolError`."""
    return parse_request(_single_frame(data, max_size))


# --- replies (server writes, Postfix reads) ------------------------------------------------


def encode_reply(reply: Reply) -> bytes:
    """*reply* as a netstring. Raises ValueError for data Postfix would not take as a hit
    (empty, NUL, not encodable, over MAX_REPLY bytes)."""
    if reply.status is Status.OK and (not reply.data or "\x00" in reply.data):
        raise ValueError("socketmap OK data must be non-empty and free of NUL")
    payload = f"{reply.status.value} {reply.data}".encode()
    if len(payload) > MAX_REPLY:
        raise ValueError(f"socketmap reply of {len(payload)} bytes exceeds Postfix's {MAX_REPLY}")
    return netstring(payload)


def parse_reply(payload: bytes) -> Reply:
    """A reply payload as Postfix reads it (an unknown word is a ProtocolError here, where
    Postfix would call it a temporary error)."""
    if len(payload) > MAX_REPLY:
        raise ProtocolError(f"reply longer than {MAX_REPLY} bytes")
    word, space, data = payload.decode("utf-8", "surrogateescape").partition(" ")
    try:
        status = Status(word)
    except ValueError:
        raise ProtocolError("reply status is not one of OK NOTFOUND TEMP TIMEOUT PERM") from None
    if not space:
        if status is Status.OK:  # Postfix: split_at() finds no value, so "not found"
            raise ProtocolError("OK reply without a space: Postfix reads it as not found")
        if status is not Status.NOTFOUND:
            raise ProtocolError("reply without a space after the status")
    return Reply(status, data)


def decode_reply(data: bytes) -> Reply:
    """One complete reply netstring as a :class:`Reply` (for tests and clients)."""
    return parse_reply(_single_frame(data, MAX_REPLY))


# --- serving one connection ----------------------------------------------------------------


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    max_request: int = MAX_REQUEST,
) -> None:
    """Answer requests on one accepted connection until EOF, idle timeout or a framing error.

    Peer checks are the caller's, before this is awaited. Answers are written in request
    order. A handler that raises yields ``TEMP`` (never ``NOTFOUND``: an outage must not
    look like an unknown address); a handler's reply that cannot be encoded likewise.
    The writer is closed on return.
    """
    decoder = NetstringDecoder(max_request)
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(_READ_CHUNK), idle_timeout)
            except (TimeoutError, ConnectionError):
                return
            if not chunk:
                return
            try:
                frames = decoder.feed(chunk)
            except FramingError:
                frames = []
            for frame in frames:  # one at a time: a pipelining client cannot pile up replies
                writer.write(await _answer(frame, handler))
                await asyncio.wait_for(writer.drain(), idle_timeout)
            if decoder.failed is not None:
                writer.write(encode_reply(Reply.perm(str(decoder.failed))))
                await asyncio.wait_for(writer.drain(), idle_timeout)
                return
    except (ConnectionError, TimeoutError):  # a peer that never reads its answers
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _answer(frame: bytes, handler: Handler) -> bytes:
    """The encoded reply to one request payload."""
    try:
        request = parse_request(frame)
    except BadRequest as exc:
        return encode_reply(Reply.perm(str(exc)))
    try:
        return encode_reply(await handler(request))
    except Exception as exc:
        return encode_reply(Reply.temp(f"internal error ({type(exc).__name__})"))
