"""Nextcloud's stored password hashes, verified exactly as Nextcloud verifies them.

Mirrors ``OC\\Security\\Hasher::verify()`` (lib/private/Security/Hasher.php):

* ``<version>|<hash>`` where PHP's ``(int)`` of the part before the first ``|`` is
  1, 2 or 3: ``password_verify($password, $hash)``. ``password_verify`` is generic,
  so the inner hash's identifier (``$argon2id$``, ``$argon2i$``, ``$2y$``…), not the
  digit, picks the algorithm. Any other positive version is refused.
* no such prefix (legacy ownCloud): a 60-character hash is bcrypt of
  ``password + passwordsalt``, then of the bare password; a 40-character hash is
  compared with ``sha1(password)`` as lower-case hex. Nothing else verifies.

Argon2 parameters come from each hash (admins tune them). bcrypt only ever sees the
first 72 bytes, up to the first NUL, as PHP's crypt() does.

Argon2 runs in libsodium (PyNaCl) for the form PHP's ``password_hash`` writes (v=19,
one lane, 16-byte salt): same output, but libsodium picks AVX2/AVX-512 code at run
time, about twice the speed of argon2-cffi's SSE2 build on x86-64 (the speed Dovecot's
own SQL passdb gets). argon2-cffi does every other form, and is the reference in tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
from typing import TYPE_CHECKING

try:
    import nacl.bindings as _sodium
except ImportError:  # pragma: no cover - a declared dependency; argon2-cffi then does it all
    _sodium = None  # type: ignore[assignment]

from ncauth.config import Hashing, HashLimits
from ncauth.errors import TemporaryFailure

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ncauth.records import NamedTuple  # typing's, without its start-up cost

_ARGON2_RE = re.compile(r"\$(argon2id|argon2i)\$(?:v=(\d+)\$)?m=(\d+),t=(\d+),p=(\d+)\$", re.ASCII)
_BCRYPT_RE = re.compile(r"\$2([abyx])\$(\d\d)\$[./A-Za-z0-9]{53}", re.ASCII)
_PHP_NUMERIC_PREFIX = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
#: argon2 error codes that say the machine could not run the check (memory, threads),
#: not that the password or the stored hash is wrong: temporary failures, never cached.
_RESOURCE_ERRORS = (
    (-22, "could not allocate {m} KiB (memory limit?)"),  # ARGON2_MEMORY_ALLOCATION_ERROR, argon2.h
    (-33, "could not start its {p} threads (process limit?)"),  # ARGON2_THREAD_FAIL
)
_PERCENT_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
#: the argon2 form libsodium computes: what PHP's password_hash writes
_SODIUM_FORM = re.compile(
    r"\$(argon2id|argon2i)\$v=19\$m=([1-9][0-9]{0,9}),t=([1-9][0-9]{0,9}),p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})",
    re.ASCII,
)
#: kind -> (algorithm, ops min, ops max, mem min, mem max), libsodium's own constants
_SODIUM_LIMITS: dict[str, tuple[int, int, int, int, int]] = (
    {}
    if _sodium is None
    else {
        kind: (
            getattr(_sodium, f"crypto_pwhash_ALG_{kind.upper()}13"),
            *(
                getattr(_sodium, f"crypto_pwhash_{kind}_{limit}")
                for limit in ("OPSLIMIT_MIN", "OPSLIMIT_MAX", "MEMLIMIT_MIN", "MEMLIMIT_MAX")
            ),
        )
        for kind in ("argon2id", "argon2i")
    }
)


class _Counter:
    """Slow-hash runs in this process (argon2 or bcrypt, decoys included): what ``ncauth
    status`` shows as ``slow_hashes``, so that "every refusal costs the same" can be
    checked from outside the daemon without timing anything."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


slow_hashes = _Counter()


class Scheme(NamedTuple):  # not a dataclass: ``dataclasses`` costs a one-shot process ms
    """What a stored hash is, for traces and logs (never the hash itself)."""

    name: str  # argon2id | argon2i | bcrypt | legacy-sha1 | legacy-bcrypt | unsupported
    version: int | None  # Nextcloud's prefix digit, None for legacy hashes
    params: str = ""  # "m=65536,t=4,p=1", "cost=10"
    problem: str = ""  # why it can never verify, if it cannot
    engine: str = ""  # argon2: "libsodium" or "argon2-cffi"
    argon2: tuple[int, int, int] | None = None  # (m, t, p) of an argon2 hash

    def covers(self, hashing: Hashing) -> bool:
        """Does checking a password against this hash cost at least one decoy with
        *hashing* (Nextcloud's current parameters)? Only an argon2 hash with at least
        that memory and time and no more lanes does; every other check (bcrypt, legacy
        hashes, older argon2 parameters, a hash refused unrun) needs decoy work beside
        it, so that a refusal costs what an unknown user's does."""
        if self.problem or self.argon2 is None:
            return False
        m, t, p = self.argon2
        return m >= hashing.memory_cost and t >= hashing.time_cost and p <= hashing.threads

    def describe(self) -> str:
        prefix = f"{self.version}| " if self.version is not None else ""
        text = f"{prefix}{self.name}" + (f" {self.params}" if self.params else "")
        return (
            text
            + (f" ({self.problem})" if self.problem else "")
            + (f" via {self.engine}" if self.engine else "")
        )


def php_int(text: str) -> int:
    """PHP 8's ``(int)$text`` for a string: leading numeric part, else 0."""
    m = _PHP_NUMERIC_PREFIX.match(text)
    if not m:
        return 0
    try:
        value = float(m.group(1))
    except OverflowError:  # pragma: no cover - float() returns inf instead
        return 0
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    return int(value)


def split(stored: str) -> tuple[int | None, str]:
    """Nextcloud's ``splitHash``: (version, inner hash), or (None, stored) when legacy."""
    head, sep, rest = stored.partition("|")
    if sep and php_int(head) > 0:
        return php_int(head), rest
    return None, stored


DEFAULT_LIMITS = HashLimits()


def _over_limits(inner: str, limits: HashLimits) -> str:
    """Why the work *inner* asks for is more than *limits* allow, or ""."""
    m = _ARGON2_RE.match(inner)
    if m:
        mem, t, p = (int(x) for x in m.groups()[2:])
        for value, most, what in (
            (mem, limits.argon2_memory_cost, "memory_cost"),
            (t, limits.argon2_time_cost, "time_cost"),
            (p, limits.argon2_threads, "threads"),
        ):
            if value > most:
                return f"argon2 {what} {value} is above [nextcloud] max_argon2_{what} = {most}"
        return ""
    m = _BCRYPT_RE.fullmatch(inner)
    if m and int(m.group(2)) > limits.bcrypt_cost:
        return f"bcrypt cost {int(m.group(2))} is above [nextcloud] max_bcrypt_cost = {limits.bcrypt_cost}"
    return ""


def _inner_scheme(inner: str, version: int | None, limits: HashLimits) -> Scheme:
    too_much = _over_limits(inner, limits)
    m = _ARGON2_RE.match(inner)
    if m:
        name, v, mem, t, p = m.groups()
        return Scheme(
            name,
            version,
            f"m={mem},t={t},p={p}" + (f",v={v}" if v and v != "19" else ""),
            too_much,
            engine="" if too_much else "libsodium" if _sodium_job(inner) else "argon2-cffi",
            argon2=(int(mem), int(t), int(p)),
        )
    m = _BCRYPT_RE.fullmatch(inner)
    if m:
        if m.group(1) == "x":
            return Scheme(
                "bcrypt", version, f"cost={int(m.group(2))}", "the buggy $2x$ variant is not supported"
            )
        return Scheme("bcrypt", version, f"cost={int(m.group(2))}", too_much)
    if inner.startswith("$2"):
        return Scheme("bcrypt", version, "", "malformed bcrypt hash")
    ident = inner.split("$")[1] if inner.startswith("$") and inner.count("$") >= 2 else ""
    what = f"${ident}$" if ident else "no scheme identifier"
    return Scheme("unsupported", version, "", f"inner hash {what} is not argon2 or bcrypt")


def identify(stored: str, limits: HashLimits = DEFAULT_LIMITS) -> Scheme:
    """Describe *stored* without verifying anything."""
    version, inner = split(stored)
    if version is not None:
        if version not in (1, 2, 3):
            return Scheme("unsupported", version, "", f"unknown Nextcloud hash version {version}")
        return _inner_scheme(inner, version, limits)
    if len(stored) == 60:
        scheme = _inner_scheme(stored, None, limits)
        if scheme.name == "bcrypt":
            return Scheme("legacy-bcrypt", None, scheme.params, scheme.problem)
        return Scheme("unsupported", None, "", "60-character legacy hash that is not bcrypt")
    if len(stored) == 40:
        if re.fullmatch(r"[0-9a-f]{40}", stored):
            return Scheme("legacy-sha1", None)
        return Scheme("legacy-sha1", None, "", "not lower-case hex, can never match sha1()")
    if not stored:
        return Scheme("unsupported", None, "", "empty password hash (user cannot log in with a password)")
    return Scheme("unsupported", None, "", f"unrecognised hash of {len(stored)} characters")


def php_urldecode(data: bytes) -> bytes:
    """PHP's ``urldecode``: ``+`` is a space, ``%XX`` a byte, any other ``%`` stays."""
    return _PERCENT_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), data.replace(b"+", b" "))


def login_password_forms(password: bytes) -> tuple[bytes, ...]:
    """The passwords Nextcloud tries, in order, for a login password (not an app
    password): ``User\\Manager::checkPasswordNoLogging`` drops NUL bytes, and when
    that fails retries with the password ``urldecode``d (HTTP basic auth has no
    standard for non-ASCII, so clients may send it percent-encoded). The second form
    is left out when it is the same password."""
    plain = password.replace(b"\0", b"")
    decoded = php_urldecode(plain)
    return (plain,) if decoded == plain else (plain, decoded)


def verify(
    password: bytes, stored: str, password_salt: str = "", limits: HashLimits = DEFAULT_LIMITS
) -> bool:
    """True if Nextcloud would accept *password* for the *stored* hash.

    A hash asking for more work than *limits* allow is refused without running it.
    Raises TemporaryFailure when the check itself could not run (argon2 could not get
    its memory), because that says nothing about the password.
    """
    version, inner = split(stored)
    if version is not None:
        return version in (1, 2, 3) and not _over_limits(inner, limits) and _password_verify(password, inner)
    if len(stored) == 60:
        if _over_limits(stored, limits):
            return False
        return _password_verify(password + password_salt.encode(), stored) or _password_verify(
            password, stored
        )
    if len(stored) == 40:  # Nextcloud's Hasher::legacyHashVerify: unsalted SHA1 of the bare password
        digest = hashlib.sha1(password).hexdigest()  # noqa: S324
        return hmac.compare_digest(stored.encode(errors="surrogateescape"), digest.encode())
    return False


def _password_verify(password: bytes, inner: str) -> bool:
    """PHP's ``password_verify`` for the algorithms PHP builds in (argon2, bcrypt)."""
    m = _ARGON2_RE.match(inner)
    if m:
        slow_hashes.add()
        fast = _sodium_verify(password, inner)
        if fast is not None:
            return fast
        # argon2-cffi only here: the form PHP writes never needs it, and a one-shot
        # process should not pay for importing it
        import argon2.low_level as _argon2
        from argon2.exceptions import VerificationError, VerifyMismatchError

        kind = _argon2.Type.ID if m.group(1) == "argon2id" else _argon2.Type.I
        try:
            return _argon2.verify_secret(inner.encode(), password, kind)
        except VerifyMismatchError:
            return False
        except VerificationError as exc:
            for code, what in _RESOURCE_ERRORS:
                if str(exc) == _argon2.error_to_str(code):
                    raise TemporaryFailure(f"argon2 {what.format(m=m.group(3), p=m.group(5))}") from None
            return False  # the stored hash itself is malformed: PHP's password_verify says false
    if _BCRYPT_RE.fullmatch(inner) and not inner.startswith("$2x$"):
        import bcrypt as _bcrypt

        slow_hashes.add()
        key = password.split(b"\0", 1)[0][:72]
        try:
            return _bcrypt.checkpw(key, inner.encode())
        except ValueError:
            return False
    return False


def _sodium_can(kind: str, m: int, t: int) -> bool:
    if kind not in _SODIUM_LIMITS:
        return False
    _, ops_min, ops_max, mem_min, mem_max = _SODIUM_LIMITS[kind]
    return ops_min <= t <= ops_max and mem_min <= m * 1024 <= mem_max


def _sodium_argon2(kind: str, password: bytes, salt: bytes, m: int, t: int, length: int) -> bytes | None:
    """Argon2 (v1.3, one lane) by libsodium, or None where libsodium cannot do these
    parameters (argon2-cffi then does)."""
    if len(salt) != 16 or not _sodium_can(kind, m, t):
        return None
    try:
        return _sodium.crypto_pwhash_alg(length, password, salt, t, m * 1024, _SODIUM_LIMITS[kind][0])
    except RuntimeError:  # within the limits, libsodium fails only for want of memory
        raise TemporaryFailure(f"argon2 could not allocate {m} KiB (memory limit?)") from None


def _canonical_b64(text: str) -> bytes | None:
    """Unpadded base64 as argon2 writes it; None unless *text* is exactly that encoding."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None
    return raw if base64.b64encode(raw).rstrip(b"=").decode() == text else None


def _sodium_job(inner: str) -> tuple[str, int, int, bytes, bytes] | None:
    """(kind, m, t, salt, tag) of an argon2 hash libsodium can check, else None."""
    form = _SODIUM_FORM.fullmatch(inner)
    if form is None:
        return None
    kind, m, t, salt_b64, tag_b64 = form.groups()
    salt, tag = _canonical_b64(salt_b64), _canonical_b64(tag_b64)
    if salt is None or tag is None or not _sodium_can(kind, int(m), int(t)):
        return None
    return kind, int(m), int(t), salt, tag


def _sodium_verify(password: bytes, inner: str) -> bool | None:
    """The verdict for an argon2 hash in libsodium's form, or None for any other form."""
    job = _sodium_job(inner)
    if job is None:
        return None
    kind, m, t, salt, tag = job
    out = _sodium_argon2(kind, password, salt, m, t, len(tag))
    return None if out is None else hmac.compare_digest(out, tag)


def decoy(password: bytes, hashing: Hashing) -> None:
    """Spend the work of one argon2id verify with Nextcloud's parameters and throw the
    result away, so unknown and refused users cost what a real check costs: by the
    engine that would check such a hash."""
    slow_hashes.add()
    if (
        hashing.threads == 1
        and _sodium_argon2("argon2id", password, os.urandom(16), hashing.memory_cost, hashing.time_cost, 32)
        is not None
    ):
        return
    import argon2.low_level as _argon2
    from argon2.exceptions import HashingError

    try:
        _argon2.hash_secret_raw(
            password,
            os.urandom(16),
            time_cost=hashing.time_cost,
            memory_cost=hashing.memory_cost,
            parallelism=hashing.threads,
            hash_len=32,
            type=_argon2.Type.ID,
        )
    except HashingError as exc:
        raise TemporaryFailure(f"argon2 decoy failed: {exc}") from None
