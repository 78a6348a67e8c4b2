"""``ncauth.cache.VerifiedCache`` (the daemon's verified-credentials cache): what it keeps,
for how long, how many, and that nothing but the very same stored hash and password hits.
Driven by an injected clock; nothing sleeps. The last tests run the policy over a real
SQLite database with such a cache, so that expiry and revocation are seen as verdicts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from support import ncschema, population
from support.nextcloud import NextcloudDB
from support.population import A, P

from ncauth import config as config_mod
from ncauth.cache import VerifiedCache
from ncauth.policy import Authenticator, Outcome

HASH = b"3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdA$aGFzaA"  # the stored hash, as read now


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- age ------------------------------------------------------------------------------------


def test_an_entry_verifies_until_max_age_then_is_dropped(clock: Clock) -> None:
    cache = VerifiedCache(max_entries=10, max_age=60, clock=clock)
    assert not cache.verified(HASH, b"pw")  # nothing is known before add()
    cache.add(HASH, b"pw")
    clock.now += 59.9
    assert cache.verified(HASH, b"pw")
    clock.now += 0.2
    assert not cache.verified(HASH, b"pw")
    assert len(cache) == 0  # an expired entry found on the way is removed
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_hit_does_not_extend_the_age_but_a_new_verification_does(clock: Clock) -> None:
    """max_age counts from the last real check against the database's hash: logging in
    every minute must not keep a match alive forever."""
    cache = VerifiedCache(max_age=60, clock=clock)
    cache.add(HASH, b"pw")
    for _ in range(5):
        clock.now += 10
        assert cache.verified(HASH, b"pw")
    clock.now += 11  # 61 s after the add, 11 s after the last hit
    assert not cache.verified(HASH, b"pw")
    cache.add(HASH, b"pw")  # verified again (the slow way): a fresh lifetime
    clock.now += 59
    assert cache.verified(HASH, b"pw")


# --- capacity ---------------------------------------------------------------------------------


def test_capacity_evicts_the_least_recently_used(clock: Clock) -> None:
    cache = VerifiedCache(max_entries=3, max_age=3600, clock=clock)
    for name in (b"a", b"b", b"c"):
        cache.add(HASH, name)
    assert cache.verified(HASH, b"a")  # used: now the most recent
    cache.add(HASH, b"d")
    assert len(cache) == 3
    assert not cache.verified(HASH, b"b")  # the least recently used went
    assert all(cache.verified(HASH, name) for name in (b"a", b"c", b"d"))


def test_refusals_are_never_kept(clock: Clock) -> None:
    """Only matches are kept: a remembered mismatch would answer a repeated guess faster
    than a first one, and tell that the account exists."""
    cache = VerifiedCache(max_entries=5, clock=clock)
    for i in range(100):
        assert not cache.verified(HASH, f"guess-{i}".encode())
    assert len(cache) == 0 and cache.misses == 100


# --- revocation: only the very same stored hash and password hit -----------------------------


def test_a_new_stored_hash_misses(clock: Clock) -> None:
    """A password change, a re-hash or a new passwordsalt changes what the database holds:
    the old match no longer counts, for the old password or any other."""
    cache = VerifiedCache(clock=clock)
    cache.add(b"verify", HASH, b"old password")
    rehashed = HASH.replace(b"t=4", b"t=3")
    assert not cache.verified(b"verify", rehashed, b"old password")
    assert not cache.verified(b"verify", HASH, b"other password")
    assert not cache.verified(b"token", HASH, b"old password")  # another kind of check
    assert cache.verified(b"verify", HASH, b"old password")


def test_parts_cannot_run_into_each_other(clock: Clock) -> None:
    """Length-prefixed parts: hash "...x" with password "y" is not hash "..." with "xy"."""
    cache = VerifiedCache(clock=clock)
    cache.add(b"ab", b"c")
    assert not cache.verified(b"a", b"bc")
    assert not cache.verified(b"abc")
    assert not cache.verified(b"ab", b"c", b"")
    assert cache.key(b"ab", b"c") != cache.key(b"a", b"bc")


def test_keys_hold_no_password_and_are_secret_to_the_process(clock: Clock) -> None:
    """A memory dump holds HMAC digests under a key that never leaves the process: no
    password, nothing to attack offline without that key."""
    one, other = VerifiedCache(clock=clock), VerifiedCache(clock=clock)
    key = one.key(HASH, P.encode())
    assert len(key) == 32 and P.encode() not in key
    assert key != other.key(HASH, P.encode())  # each process draws its own key


# --- through the policy -----------------------------------------------------------------------


@pytest.fixture
def authenticator(nextcloud_sqlite: NextcloudDB, clock: Clock) -> Iterator[Authenticator]:
    config = config_mod.load(str(nextcloud_sqlite.write_config(population.STANDARD_CONFIG)))
    auth = Authenticator(config, cache=VerifiedCache(max_entries=100, max_age=60, clock=clock))
    yield auth
    auth.store.close()


def _login(auth: Authenticator, password: str) -> tuple[Outcome, bool]:
    """(verdict, whether the cache answered)."""
    assert auth.cache is not None
    hits = auth.cache.hits
    outcome = auth.authenticate(A, password.encode()).outcome
    return outcome, auth.cache.hits > hits


def test_the_policy_checks_again_once_the_entry_is_too_old(
    authenticator: Authenticator, clock: Clock
) -> None:
    assert _login(authenticator, P) == (Outcome.OK, False)  # the slow check
    assert _login(authenticator, P) == (Outcome.OK, True)
    clock.now += 61
    assert _login(authenticator, P) == (Outcome.OK, False)  # too old: the slow check again
    assert _login(authenticator, P) == (Outcome.OK, True)


def test_the_policy_revokes_a_cached_match_at_once(
    authenticator: Authenticator, nextcloud_sqlite: NextcloudDB
) -> None:
    """Within max_age: a password changed in Nextcloud fails at once, and a disabled
    account is refused although its match is cached."""
    assert _login(authenticator, P) == (Outcome.OK, False)
    new = "a brand new password 2026"
    with nextcloud_sqlite.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE oc_users SET password = :h WHERE uid = 'Alice'"), {"h": population.php_hash(new)}
        )
    assert _login(authenticator, P) == (Outcome.REFUSED, False)
    assert _login(authenticator, new) == (Outcome.OK, False)
    assert _login(authenticator, new) == (Outcome.OK, True)
    with nextcloud_sqlite.engine.begin() as conn:
        ncschema.disable_user(conn, "oc_", "Alice")
    outcome, _ = _login(authenticator, new)
    assert outcome is Outcome.REFUSED
