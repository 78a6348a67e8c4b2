"""``ncauth.throttle``: budgets per source network and per account, attempts counted in
flight, settle semantics, reloads keeping state, and memory bounded in bytes. Every test
drives an injected clock; nothing sleeps."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import pytest

from ncauth.throttle import Attempt, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(t: Throttle, account: str, ip: str) -> None:
    attempt = t.admit(account, ip)
    assert isinstance(attempt, Attempt), attempt
    attempt.settle(False)


def admitted(result: Attempt | str) -> bool:
    return isinstance(result, Attempt)


# --- per account -------------------------------------------------------------------------


def test_account_budget_is_shared_by_every_spelling_the_caller_maps_to_it(clock: Clock) -> None:
    """The caller maps Alice@Example.org, alice@example.org, alice... to one account key:
    failures under any spelling, from any address, use up one budget; the window frees it."""
    t = Throttle(window=300, ip_failures=100, user_failures=4, clock=clock)
    spellings = ["Alice@Example.org", "alice@example.org", "ALICE", "alice@EXAMPLE.ORG"]
    account = dict.fromkeys(spellings, "alice")  # what the lead's account resolution returns
    for i, s in enumerate(spellings):
        fail(t, account[s], f"203.0.113.{i}")
    refused = t.admit(account["alice@example.org"], "198.51.100.7")
    assert refused == "throttled: too many failed logins for this user"
    assert admitted(t.admit("bob", "198.51.100.7"))  # other accounts go on
    assert t.throttled == 1

    clock.now += 299
    assert not admitted(t.admit("alice", "198.51.100.8"))
    clock.now += 2  # the oldest failures leave the window
    with t.admit("alice", "198.51.100.8") as attempt:
        assert admitted(attempt)


def test_known_good_address_is_let_in_while_the_account_is_throttled(clock: Clock) -> None:
    t = Throttle(ip_failures=100, user_failures=3, clock=clock)
    t.admit("alice", "198.51.100.5").settle(True)  # her home address
    for i in range(3):
        fail(t, "alice", f"203.0.113.{i}")
    assert t.admit("alice", "203.0.113.99") == "throttled: too many failed logins for this user"
    home = t.admit("alice", "198.51.100.5")
    assert admitted(home)
    home.settle(True)
    # known-good is per account: Bob's success from the attacker's address does not help Alice
    t.admit("bob", "203.0.113.50").settle(True)
    assert not admitted(t.admit("alice", "203.0.113.50"))
    # and it expires after good_ip_days
    t.configure(good_ip_days=1)
    clock.now += 86400 + 1
    for i in range(3):
        fail(t, "alice", f"203.0.113.{10 + i}")
    assert not admitted(t.admit("alice", "198.51.100.5"))


def test_exempt_sources_skip_the_ip_budget_but_never_the_account_budget(clock: Clock) -> None:
    webmail = "192.0.2.10"
    t = Throttle(ip_failures=3, user_failures=4, exempt=lambda ip: ip == webmail, clock=clock)
    for i in range(10):  # many users' typos through the webmail host
        fail(t, f"user{i}", webmail)
    assert admitted(t.admit("bob", webmail))

    # Alice logs in through webmail; then someone guesses her password through it
    t.admit("alice", webmail).settle(True)
    for _ in range(4):
        fail(t, "alice", webmail)
    # a shared host is no known-good address: the account budget still holds there
    assert t.admit("alice", webmail) == "throttled: too many failed logins for this user"


def test_requests_without_an_address_count_only_against_the_account(clock: Clock) -> None:
    t = Throttle(ip_failures=2, user_failures=3, clock=clock)
    for i in range(5):
        fail(t, f"user{i}", "")
    assert admitted(t.admit("user9", ""))
    for _ in range(3):
        fail(t, "carol", "")
    assert not admitted(t.admit("carol", ""))


# --- per source --------------------------------------------------------------------------


def test_ipv6_addresses_of_one_prefix_share_one_budget(clock: Clock) -> None:
    t = Throttle(ip_failures=20, user_failures=1000, clock=clock)
    for i in range(20):
        fail(t, f"user{i}", f"2001:db8:1:2::{i + 1:x}")
    results = [t.admit(f"other{i}", f"2001:db8:1:2:{i:x}::1") for i in range(40)]
    assert all(r == "throttled: too many failed logins from 2001:db8:1:2::/64" for r in results)
    assert admitted(t.admit("user0", "2001:db8:1:3::1"))  # the next /64 is someone else
    assert admitted(t.admit("user0", "198.51.100.1"))


def test_ipv6_prefix_is_configurable_and_128_means_per_address(clock: Clock) -> None:
    t = Throttle(ip_failures=2, user_failures=1000, ipv6_prefix=128, clock=clock)
    for i in range(2):
        fail(t, f"u{i}", "2001:db8::1")
    assert t.admit("x", "2001:db8::1") == "throttled: too many failed logins from 2001:db8::1"
    assert admitted(t.admit("x", "2001:db8::2"))

    t48 = Throttle(ip_failures=2, user_failures=1000, ipv6_prefix=48, clock=clock)
    fail(t48, "a", "2001:db8:7:1::1")
    fail(t48, "b", "2001:db8:7:ffff::9")
    assert t48.admit("c", "2001:db8:7:42::1") == "throttled: too many failed logins from 2001:db8:7::/48"
    for bad in (31, 129):
        with pytest.raises(ValueError):
            Throttle(ipv6_prefix=bad)


def test_ipv4_mapped_ipv6_is_the_ipv4_address(clock: Clock) -> None:
    t = Throttle(ip_failures=4, user_failures=1000, clock=clock)
    fail(t, "a", "203.0.113.66")
    fail(t, "b", "::ffff:203.0.113.66")
    fail(t, "c", "::FFFF:cb00:7142")  # the same address in hex
    fail(t, "d", "203.0.113.66")
    for ip in ("203.0.113.66", "::ffff:203.0.113.66"):
        assert t.admit("e", ip) == "throttled: too many failed logins from 203.0.113.66"
    assert admitted(t.admit("e", "203.0.113.67"))  # IPv4 stays per address by default

    t24 = Throttle(ip_failures=2, user_failures=1000, ipv4_prefix=24, clock=clock)
    fail(t24, "a", "203.0.113.1")
    fail(t24, "b", "::ffff:203.0.113.200")
    assert t24.admit("c", "203.0.113.9") == "throttled: too many failed logins from 203.0.113.0/24"


def test_prefix_lengths_out_of_range_are_refused() -> None:
    for kwargs in ({"ipv4_prefix": 7}, {"ipv4_prefix": 33}, {"ipv6_prefix": 129}):
        with pytest.raises(ValueError, match="prefix"):
            Throttle(**kwargs)


def test_unparsable_addresses_are_budgeted_too(clock: Clock) -> None:
    t = Throttle(ip_failures=2, user_failures=1000, clock=clock)
    fail(t, "a", "not-an-address")
    fail(t, "b", "not-an-address")
    assert t.admit("c", "not-an-address") == "throttled: too many failed logins from this address"
    assert admitted(t.admit("c", "not-an-address-either"))


# --- in flight -----------------------------------------------------------------------------


def test_a_parallel_burst_from_one_source_is_capped_at_its_budget(clock: Clock) -> None:
    """80 guesses arrive before any verdict: only the budget's worth goes to the workers."""
    t = Throttle(ip_failures=20, user_failures=10, clock=clock)
    burst = [t.admit(f"user{i}", "203.0.113.66") for i in range(80)]
    passed = [a for a in burst if isinstance(a, Attempt)]
    assert len(passed) == 20
    assert set(burst[20:]) == {"throttled: too many failed logins from 203.0.113.66"}
    assert t.throttled == 60

    passed[0].settle(True)  # a success frees its slot
    late = t.admit("late", "203.0.113.66")
    assert admitted(late)
    assert not admitted(t.admit("later", "203.0.113.66"))


def test_a_parallel_burst_at_one_account_is_capped_at_its_budget(clock: Clock) -> None:
    t = Throttle(ip_failures=20, user_failures=10, clock=clock)
    burst = [t.admit("alice", f"203.0.113.{i}") for i in range(80)]
    assert sum(map(admitted, burst)) == 10
    assert burst[10] == "throttled: too many failed logins for this user"


def test_admit_is_atomic_across_threads(clock: Clock) -> None:
    t = Throttle(ip_failures=20, user_failures=1000, clock=clock)
    results: list[Attempt | str] = []
    lock, start = threading.Lock(), threading.Barrier(16)

    def guess(n: int) -> None:
        start.wait()
        for i in range(10):
            r = t.admit(f"u{n}.{i}", "203.0.113.66")
            with lock:
                results.append(r)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    attempts = [r for r in results if isinstance(r, Attempt)]
    assert len(attempts) == 20
    settlers = [threading.Thread(target=a.settle, args=(False,)) for a in attempts]
    for th in settlers:
        th.start()
    for th in settlers:
        th.join()
    assert t.sizes()["sources"] == 1 and not admitted(t.admit("x", "203.0.113.66"))


def test_failures_are_recorded_when_settled(clock: Clock) -> None:
    t = Throttle(window=100, ip_failures=2, user_failures=1000, clock=clock)
    first = t.admit("a", "203.0.113.1")
    assert isinstance(first, Attempt)
    clock.now += 50  # a slow verdict: the failure counts from now on, not from admission
    first.settle(False)
    fail(t, "b", "203.0.113.1")
    clock.now += 99
    assert not admitted(t.admit("c", "203.0.113.1"))
    clock.now += 2
    assert admitted(t.admit("c", "203.0.113.1"))


def test_a_temporary_failure_leaves_no_trace_and_settling_twice_is_a_no_op(clock: Clock) -> None:
    t = Throttle(ip_failures=2, user_failures=2, clock=clock)
    for _ in range(10):
        attempt = t.admit("alice", "203.0.113.1")
        assert isinstance(attempt, Attempt)
        attempt.settle(None)
        attempt.settle(False)  # ignored: already settled
        attempt.settle(True)  # ignored: no known-good either
    assert t.sizes() == {"sources": 0, "accounts": 0, "known_good": 0}

    fail(t, "alice", "203.0.113.1")
    done = t.admit("alice", "203.0.113.1")
    assert isinstance(done, Attempt)
    done.settle(True)
    done.settle(False)  # must not turn the success into a second failure
    assert admitted(t.admit("alice", "203.0.113.1"))


def test_the_context_manager_settles_unsettled_attempts(clock: Clock) -> None:
    t = Throttle(ip_failures=1, user_failures=1, clock=clock)
    with pytest.raises(RuntimeError), t.admit("alice", "203.0.113.1") as attempt:  # noqa: PT012
        assert admitted(t.admit("bob", "203.0.113.1")) is False  # in flight meanwhile
        raise RuntimeError("worker died")
    assert attempt.settled
    with t.admit("alice", "203.0.113.1") as attempt:
        attempt.settle(False)  # explicit verdict wins; __exit__ does nothing more
    assert not admitted(t.admit("alice", "198.51.100.1"))
    assert t.sizes()["accounts"] == 1


def test_an_attempt_dropped_unsettled_does_not_leak_its_count(clock: Clock) -> None:
    t = Throttle(ip_failures=1, user_failures=1, clock=clock)
    t.admit("alice", "203.0.113.1")  # dropped at once, e.g. a cancelled request
    gc.collect()
    assert admitted(t.admit("alice", "203.0.113.1"))


def test_an_attempt_in_flight_keeps_its_count_when_the_table_is_trimmed(clock: Clock) -> None:
    """Eviction prefers keys with nothing in flight: a slow guess still counts against
    its source while other sources come and go."""
    t = Throttle(max_keys=2, ip_failures=1, user_failures=1000, clock=clock)
    slow = t.admit("u0", "203.0.113.1")
    assert isinstance(slow, Attempt)
    fail(t, "u1", "203.0.113.2")
    fail(t, "u2", "203.0.113.3")  # three sources for two slots: one must go
    assert t.sizes()["sources"] == 2
    assert t.admit("u9", "203.0.113.1") == "throttled: too many failed logins from 203.0.113.1"
    assert admitted(t.admit("u9", "203.0.113.2"))  # the idle one went


def test_a_failure_settled_after_its_key_was_evicted_still_counts(clock: Clock) -> None:
    """When every key has attempts in flight, some must go anyway (memory stays bounded);
    their failures, settled later, are recorded afresh rather than lost."""
    t = Throttle(max_keys=1, ip_failures=1, user_failures=1000, clock=clock)
    first, second = t.admit("u0", "203.0.113.1"), t.admit("u1", "203.0.113.2")
    assert isinstance(first, Attempt) and isinstance(second, Attempt)
    assert t.sizes()["sources"] == 1  # one of the two was evicted while in flight
    first.settle(False)
    second.settle(False)
    for ip in ("203.0.113.1", "203.0.113.2"):
        assert t.admit("u9", ip) == f"throttled: too many failed logins from {ip}"


# --- known-good sources ----------------------------------------------------------------------


def test_known_good_sources_are_forgotten_after_good_ip_days(clock: Clock) -> None:
    t = Throttle(good_ip_days=1, clock=clock)
    t.admit("alice", "198.51.100.5").settle(True)
    assert t.sizes()["known_good"] == 1
    clock.now += 86400 + 1
    t.admit("bob", "198.51.100.6").settle(None)  # any call does the housekeeping
    assert t.sizes()["known_good"] == 0


def test_known_good_sources_are_bounded_and_the_oldest_go_first(clock: Clock) -> None:
    t = Throttle(max_keys=3, ip_failures=100, user_failures=1, clock=clock)
    for account, ip in (("alice", "198.51.100.1"), ("bob", "198.51.100.2"), ("carol", "198.51.100.3")):
        t.admit(account, ip).settle(True)
        clock.now += 1
    t.admit("alice", "198.51.100.4").settle(True)  # a fourth pair: alice's first address goes
    assert t.sizes()["known_good"] == 3
    fail(t, "alice", "203.0.113.9")
    assert admitted(t.admit("alice", "198.51.100.4"))
    assert t.admit("alice", "198.51.100.1") == "throttled: too many failed logins for this user"


def test_good_ip_days_zero_turns_the_known_good_exception_off(clock: Clock) -> None:
    t = Throttle(good_ip_days=0, ip_failures=100, user_failures=1, clock=clock)
    t.admit("alice", "198.51.100.5").settle(True)
    fail(t, "alice", "203.0.113.9")
    assert t.admit("alice", "198.51.100.5") == "throttled: too many failed logins for this user"


# --- reload --------------------------------------------------------------------------------


def test_configure_keeps_the_counters_and_applies_new_limits(clock: Clock) -> None:
    t = Throttle(ip_failures=5, user_failures=5, clock=clock)
    t.admit("alice", "198.51.100.5").settle(True)
    for _ in range(3):
        fail(t, "alice", "203.0.113.66")
    t.configure(ip_failures=10, user_failures=10)  # a SIGHUP with the same or looser limits
    for _ in range(3):
        fail(t, "alice", "203.0.113.66")
    assert admitted(t.admit("alice", "203.0.113.67"))
    t.configure(ip_failures=6, user_failures=6)  # SIGHUP: nobody gets a fresh budget
    assert t.admit("bob", "203.0.113.66") == "throttled: too many failed logins from 203.0.113.66"
    assert t.admit("alice", "203.0.113.70") == "throttled: too many failed logins for this user"
    assert admitted(t.admit("alice", "198.51.100.5"))  # known-good survives too
    t.configure(window=10)  # a shorter window applies at once
    clock.now += 11
    assert admitted(t.admit("bob", "203.0.113.66"))
    calls: list[str] = []
    t.configure(exempt=lambda ip: calls.append(ip) or ip == "203.0.113.66")
    t.configure(ip_failures=1, window=300)
    for i in range(3):
        fail(t, f"u{i}", "203.0.113.66")
    assert calls and admitted(t.admit("u9", "203.0.113.66"))
    with pytest.raises(ValueError):
        t.configure(user_failures=0)
    assert t.user_failures == 6


def test_shrinking_max_keys_evicts_at_once(clock: Clock) -> None:
    t = Throttle(max_keys=100, clock=clock)
    for i in range(100):
        fail(t, f"u{i}", f"203.0.113.{i}")
    t.configure(max_keys=10)
    assert t.sizes()["sources"] <= 10 and t.sizes()["accounts"] <= 10


# --- memory --------------------------------------------------------------------------------


def test_memory_is_bounded_whatever_the_logins_look_like(clock: Clock) -> None:
    """30,000 distinct 16 KiB usernames from 30,000 addresses: keys are 16-byte digests, so
    the throttle grows by a few MiB (the old one kept every string: ~500 MiB)."""
    n, max_keys = 30_000, 20_000
    t = Throttle(max_keys=max_keys, clock=clock)
    filler = "x" * (16 * 1024 - 16)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            clock.now += 0.001
            fail(t, f"{i:016d}{filler}", f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1")
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    sizes = t.sizes()
    assert sizes["sources"] <= max_keys and sizes["accounts"] <= max_keys
    assert sizes["sources"] == max_keys  # evicted, not refused
    assert grown < 20 * 2**20, f"throttle grew by {grown / 2**20:.1f} MiB"


def test_stale_keys_are_forgotten(clock: Clock) -> None:
    t = Throttle(window=60, clock=clock)
    for i in range(200):
        fail(t, f"u{i}", f"203.0.113.{i}")
    clock.now += 61
    for _ in range(20):
        t.admit("alice", "198.51.100.1").settle(None)
    assert t.sizes() == {"sources": 0, "accounts": 0, "known_good": 0}
