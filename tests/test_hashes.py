"""ncauth.hashes against hashes made by PHP the way Nextcloud stores them."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncauth import hashes
from ncauth.config import Hashing, HashLimits

VECTORS = Path(__file__).parent / "vectors"


def _cases(doc: dict) -> list[tuple[str, str, bytes, bool]]:
    return [
        (case["name"], case["stored"], bytes.fromhex(v["password_hex"]), v["accepted"])
        for case in doc["cases"]
        for v in case["verdicts"]
    ]


CHECKED_IN = json.loads((VECTORS / "nextcloud_hashes.json").read_text())


@pytest.mark.parametrize(
    ("name", "stored", "password", "accepted"),
    _cases(CHECKED_IN),
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_checked_in_vectors_match_php(name: str, stored: str, password: bytes, accepted: bool) -> None:
    assert hashes.verify(password, stored, CHECKED_IN["passwordsalt"]) is accepted


def test_vectors_cover_every_format() -> None:
    accepted = {c["name"] for c in CHECKED_IN["cases"] if any(v["accepted"] for v in c["verdicts"])}
    for name in (
        "argon2id-nextcloud-default",
        "argon2i-seed-params",
        "bcrypt-cost10",
        "legacy-sha1",
        "legacy-bcrypt-salted",
        "legacy-bcrypt-unsalted",
        "digit-1-inner-argon2id",
        "bcrypt-long-password",
    ):
        assert name in accepted
    for name in ("unknown-version-4", "legacy-sha1-uppercase-hex", "garbage", "empty-hash", "bare-prefix"):
        assert name not in accepted


def _php() -> str | None:
    php = shutil.which("php")
    if php is None and (os.environ.get("CI") or os.environ.get("NCAUTH_REQUIRE_PHP")):
        pytest.fail("php CLI missing: CI must install php-cli")
    return php


def test_fresh_php_vectors() -> None:
    """Regenerate the vectors with the local PHP (new salts) and check every verdict."""
    php = _php()
    if php is None:
        pytest.skip("php CLI not installed")
    out = subprocess.run(
        [php, str(VECTORS / "make_vectors.php")], capture_output=True, check=True, timeout=120
    )
    doc = json.loads(out.stdout)
    assert doc["cases"] and doc["cases"][0]["stored"] != CHECKED_IN["cases"][0]["stored"]
    for name, stored, password, accepted in _cases(doc):
        assert hashes.verify(password, stored, doc["passwordsalt"]) is accepted, name


def test_php_int_matches_php() -> None:
    """Nextcloud splits on PHP's (int) cast of the prefix; ours must agree byte for byte."""
    php = _php()
    if php is None:
        pytest.skip("php CLI not installed")
    samples = [
        "3",
        "03",
        " 3",
        "+3",
        "-3",
        "3abc",
        "3.9",
        "0.3e1",
        "1e1",
        "",
        "abc",
        "\t2",
        "0x1A",
        "2 ",
        "99999999999999999999",
        ".5",
        "1_000",
        "٣",
        "3e",
        "-0",
        "1.5e-1",
    ]
    code = 'foreach (json_decode(file_get_contents("php://stdin")) as $s) { echo (int)$s, "\\n"; }'
    out = subprocess.run(
        [php, "-r", code], input=json.dumps(samples).encode(), capture_output=True, check=True, timeout=30
    )
    expected = [int(line) for line in out.stdout.split()]
    ours = [hashes.php_int(s) for s in samples]
    # Out-of-range values differ by platform in PHP and never make a version 1-3 anyway.
    for s, mine, theirs in zip(samples, ours, expected, strict=True):
        if abs(theirs) < 2**62:
            assert mine == theirs, s


def test_php_urldecode_matches_php() -> None:
    """The second form Nextcloud tries for a login password is PHP's urldecode()."""
    import base64
    import random

    php = _php()
    if php is None:
        pytest.skip("php CLI not installed")
    rng = random.Random(20261126)
    alphabet = [b"%", b"+", b"2", b"0", b"b", b"B", b"f", b"G", b" ", b"\xc3\xa4", b"\x00", b"%2", b"%%"]
    samples = [b"", b"%", b"%4", b"%41", b"%4g", b"%%41", b"+%2B+", b"%2b", b"100%", b"%C3%A4", b"%00x"]
    samples += [b"".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(500)]
    code = (
        'foreach (json_decode(file_get_contents("php://stdin")) as $s) '
        '{ echo base64_encode(urldecode(base64_decode($s))), "\\n"; }'
    )
    out = subprocess.run(
        [php, "-r", code],
        input=json.dumps([base64.b64encode(s).decode() for s in samples]).encode(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    expected = [base64.b64decode(line) for line in out.stdout.decode().split("\n")[:-1]]
    assert [hashes.php_urldecode(s) for s in samples] == expected


def test_login_password_forms() -> None:
    """Manager::checkPasswordNoLogging: NULs dropped, then the urldecoded retry."""
    assert hashes.login_password_forms(b"plain") == (b"plain",)
    assert hashes.login_password_forms(b"a\0b") == (b"ab",)
    assert hashes.login_password_forms(b"a+b%21\0") == (b"a+b%21", b"a b!")
    assert hashes.login_password_forms(b"%2500") == (b"%2500", b"%00")  # decoded once, as PHP does


@pytest.mark.parametrize(
    ("stored", "described"),
    [
        (
            "3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdHNhbHQ$aGFzaA",
            "3| argon2id m=65536,t=4,p=1 via argon2-cffi",
        ),
        ("2|$argon2i$v=19$m=32768,t=4,p=1$c2FsdHNhbHQ$aGFzaA", "2| argon2i m=32768,t=4,p=1 via argon2-cffi"),
        (
            "3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
            "3| argon2id m=65536,t=4,p=1 via libsodium",
        ),
        (
            "2|$argon2i$v=19$m=32768,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
            "2| argon2i m=32768,t=2,p=1 via argon2-cffi",
        ),
        (
            "3|$argon2id$v=19$m=65536,t=4,p=2$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
            "3| argon2id m=65536,t=4,p=2 via argon2-cffi",
        ),
        ("1|$2y$10$" + "a" * 53, "1| bcrypt cost=10"),
        ("a" * 40, "legacy-sha1"),
        ("$2y$04$" + "b" * 53, "legacy-bcrypt cost=4"),
        (
            "4|$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "4| unsupported (unknown Nextcloud hash version 4)",
        ),
        ("1|$6$rounds=5000$salt$hash", "1| unsupported (inner hash $6$ is not argon2 or bcrypt)"),
        ("", "unsupported (empty password hash (user cannot log in with a password))"),
    ],
)
def test_identify(stored: str, described: str) -> None:
    assert hashes.identify(stored).describe() == described


@given(st.text(max_size=120), st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_verify_never_raises_on_junk(stored: str, password: bytes) -> None:
    """Whatever a hash column holds, verify answers True/False (junk never verifies)."""
    assert hashes.verify(password, stored, "salt") in (True, False)


def _tempfail_in_child(stored: str, password: bytes, limit: str) -> bytes:
    """hashes.verify in a child under RLIMIT_AS = *limit* (a Python expression; ``vm``
    is the child's size once argon2 has run there once, so lazy imports and the
    allocator's first arenas are already counted): what the TemporaryFailure said, or
    the test fails. ``stack`` is the size glibc gives each new thread's stack, the
    child's stack limit, pinned to 8 MiB (or the hard limit, if lower) whatever the
    shell that started the tests set."""
    warm = "3|$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43  # same engine, one lane
    code = (
        "import resource, sys\n"
        "from ncauth import hashes\n"
        "from ncauth.config import HashLimits\n"
        "from ncauth.errors import TemporaryFailure\n"
        f"hashes.verify(b'pw', {warm!r})\n"
        "stack = resource.getrlimit(resource.RLIMIT_STACK)[0]\n"
        "vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')) * 1024\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
        "try:\n"
        f"    hashes.verify({password!r}, {stored!r}, '', HashLimits(argon2_memory_cost=4 << 20))\n"
        "except TemporaryFailure as exc:\n"
        "    print('tempfail', exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )

    def stack_8_mib() -> None:
        hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
        soft = 8 << 20 if hard == resource.RLIM_INFINITY else min(8 << 20, hard)
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, preexec_fn=stack_8_mib
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "stored",
    [
        "3|$argon2id$v=19$m=2097152,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43,  # 12-byte salt: argon2-cffi
        "3|$argon2id$v=19$m=2097152,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,  # PHP's form: libsodium
    ],
)
def test_argon2_out_of_memory_is_a_temporary_failure(stored: str) -> None:
    """An argon2 hash that cannot get its memory says nothing about the password, in
    either engine."""
    assert b"tempfail argon2 could not allocate 2097152 KiB" in _tempfail_in_child(stored, b"x", "1 << 30")


def test_argon2_thread_failure_is_a_temporary_failure() -> None:
    """A p=4 hash whose threads cannot start (no address space left for their stacks)
    is a temporary failure too, not a wrong password."""
    stored = "3|$argon2id$v=19$m=64,t=1,p=4$c2FsdHNhbHRzYWx0$RgWONyRUDiuQQg89Ngs6DgKFN1opcltVJiNR1VVDarI"
    assert hashes.verify(b"pw", stored)
    assert b"tempfail argon2 could not start its 4 threads" in _tempfail_in_child(
        stored,
        b"pw",
        "vm + (4 << 20)",  # room for 64 KiB, not for one 8 MiB thread stack
    )


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (
            "3|$argon2id$v=19$m=65536,t=20000000,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
            "time_cost 20000000 is above",
        ),
        (
            "3|$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
            "memory_cost 1048576 is above",
        ),
        ("3|$argon2i$v=19$m=64,t=1,p=64$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43, "threads 64 is above"),
        ("1|$2y$31$" + "a" * 53, "bcrypt cost 31 is above [nextcloud] max_bcrypt_cost = 14"),
        ("$2y$20$" + "a" * 53, "bcrypt cost 20 is above"),  # legacy, unprefixed
    ],
)
def test_hashes_above_the_limits_are_refused_without_running(stored: str, problem: str) -> None:
    """A hostile row cannot hold a worker for hours or take gigabytes: above the limits
    the hash is refused at once (each of these would take minutes to years)."""
    started = time.perf_counter()
    assert hashes.verify(b"pw", stored) is False
    assert time.perf_counter() - started < 1
    assert problem in hashes.identify(stored).problem
    assert not hashes.identify(stored).covers(Hashing(8, 1, 1))  # a refusal gets the full decoy
    assert (
        hashes.identify(
            stored,
            HashLimits(
                argon2_memory_cost=2 << 20, argon2_time_cost=10**9, argon2_threads=255, bcrypt_cost=31
            ),
        ).problem
        == ""
    )


@pytest.mark.parametrize(
    ("stored", "covers"),
    [
        ("3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43, True),  # Nextcloud's default
        ("3|$argon2id$v=19$m=131072,t=6,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43, True),  # more than the decoy
        ("3|$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43, False),  # less time
        ("3|$argon2id$v=19$m=32768,t=4,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43, False),  # less memory
        ("3|$argon2id$v=19$m=65536,t=4,p=2$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43, False),  # two lanes: faster
        ("1|$2y$10$" + "a" * 53, False),
        ("a" * 40, False),
        ("", False),
    ],
)
def test_only_hashes_at_nextclouds_cost_cover_a_refusal(stored: str, covers: bool) -> None:
    """A refusal must cost a decoy with Nextcloud's parameters: which stored hashes cost
    that on their own (the others get the decoy beside them)."""
    assert hashes.identify(stored).covers(Hashing(65536, 4, 1)) is covers


def test_decoy_uses_the_configured_parameters() -> None:
    """The decoy for unknown users runs argon2 with Nextcloud's hashing parameters:
    under a memory limit a huge memory_cost must fail, a small one must pass."""
    hashes.decoy(b"pw", Hashing(memory_cost=8, time_cost=1, threads=1))
    code = (
        "import resource\n"
        "from ncauth import hashes\n"
        "from ncauth.config import Hashing\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "hashes.decoy(b'pw', Hashing(memory_cost=2097152, time_cost=1, threads=1))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"TemporaryFailure: argon2 " in proc.stderr


# --- the argon2 engines: libsodium for PHP's form, argon2-cffi for the rest -------------


def _cffi_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashes, "_SODIUM_LIMITS", {})


def test_engines_agree_on_every_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PHP-made vectors verify alike through libsodium and argon2-cffi, and the
    PHP default forms really go through libsodium."""
    import nacl.bindings

    calls: list[int] = []
    real = nacl.bindings.crypto_pwhash_alg
    monkeypatch.setattr(nacl.bindings, "crypto_pwhash_alg", lambda *a: calls.append(1) or real(*a))
    cases = list(_cases(CHECKED_IN))
    fast = [hashes.verify(pw, stored, CHECKED_IN["passwordsalt"]) for _, stored, pw, _ in cases]
    assert calls, "no vector went through libsodium"
    _cffi_only(monkeypatch)
    calls.clear()
    reference = [hashes.verify(pw, stored, CHECKED_IN["passwordsalt"]) for _, stored, pw, _ in cases]
    assert not calls
    assert fast == reference == [accepted for *_, accepted in cases]


@given(
    kind=st.sampled_from(["argon2id", "argon2i"]),
    password=st.binary(max_size=40),
    other=st.binary(max_size=40),
    m=st.integers(8, 64),
    t=st.integers(1, 4),
    salt=st.binary(min_size=8, max_size=24),
    tweak=st.integers(0, 200),
)
@settings(max_examples=150, deadline=None, derandomize=True)
def test_engines_agree_on_made_hashes(
    kind: str, password: bytes, other: bytes, m: int, t: int, salt: bytes, tweak: int
) -> None:
    """Hashes argon2-cffi makes (any salt length, argon2i with t below libsodium's
    minimum), and copies with one character changed: both engines give one verdict."""
    import argon2.low_level as a

    stored = (
        "3|"
        + a.hash_secret(password, salt, t, m, 1, 32, a.Type.ID if kind == "argon2id" else a.Type.I).decode()
    )
    pos = len(stored) - 1 - tweak % 50
    changed = stored[:pos] + ("B" if stored[pos] != "B" else "C") + stored[pos + 1 :]
    verdicts = []
    for limits in (hashes._SODIUM_LIMITS, {}):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hashes, "_SODIUM_LIMITS", limits)
            verdicts.append(
                [
                    hashes.verify(password, stored),
                    hashes.verify(other, stored),
                    hashes.verify(password, changed),
                ]
            )
    assert verdicts[0] == verdicts[1]
    assert verdicts[0][0] is True and verdicts[0][1] is (other == password)
