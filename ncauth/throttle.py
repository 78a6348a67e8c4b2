"""Failure throttling for the daemon: a password-spraying client or a distributed guess
at one account cannot burn the workers, and the real user keeps logging in.

Two sliding windows count failed logins (wrong password, unknown or refused user):

* per source: past ``ip_failures`` failures in ``window`` seconds, the source gets
  TEMPFAIL "throttled" at once, before any worker or database is involved. A source is an
  IPv4 address (or its ``ipv4_prefix`` network) or an IPv6 ``ipv6_prefix`` network (default
  /64: one host owns a whole /64, so per-address budgets would multiply); ``::ffff:a.b.c.d``
  is the IPv4 address. Addresses the ``exempt`` callable names (``[daemon]
  throttle_exempt_networks``, empty by default: a webmail host speaks for many users) and
  requests without an address skip this budget.
* per account: past ``user_failures`` failures in ``window`` seconds from any sources, the
  account is throttled too. The caller passes an account key (the Nextcloud account a login
  names, or the normalized login), so spellings of one account share one budget. Exception:
  a source where the account logged in successfully within ``good_ip_days`` is let through,
  so an attack on an account does not lock its owner out. Exempt sources never get this
  exception (a shared webmail host must not lift the budget for everyone behind it).

Attempts count *in flight* from ``admit`` on, as if they had failed, so a burst of parallel
guesses cannot pass the check before the first verdict is recorded; ``Attempt.settle`` turns
the in-flight count into a failure, or drops it. Throttled answers are temporary failures:
mail clients retry later instead of dropping the saved password, and an attacker learns
nothing.

Memory is bounded in bytes whatever the clients send: keys are 16-byte keyed BLAKE2b digests
(per-process random key, so nobody can aim collisions), each table holds at most ``max_keys``
keys (least recently used dropped first), and a key keeps at most ``limit`` timestamps in a
compact ``array('d')``. Measured with tracemalloc (CPython 3.11, x86-64, default limits
20/10, every window full, all three tables at ``max_keys``): ~1.1 KiB per key slot summed
over the tables (source ~0.41 KiB, account ~0.34 KiB, known-good pair ~0.14 KiB, plus dict
slack), so the default ``max_keys=30_000`` holds the whole throttle at 31.3 MiB (33.0 MiB
peak while a table resizes). Each extra allowed failure costs 8 bytes per key of its table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable

DEFAULT_MAX_KEYS = 30_000
_SWEEP = 16  # stale keys dropped per call at most: bounded latency, amortized cleanup


def _never(ip: str) -> bool:
    return False


class _Windows:
    """Per key: an ``array('d')`` holding [in-flight count, failure times oldest first...],
    in least-recently-touched order so stale keys sit at the front."""

    def __init__(self) -> None:
        self.entries: OrderedDict[bytes, array[float]] = OrderedDict()

    def load(self, key: bytes, since: float) -> int:
        """In-flight attempts plus failures since *since* (expired ones are dropped)."""
        e = self.entries.get(key)
        if e is None:
            return 0
        _expire(e, since)
        if len(e) == 1 and not e[0]:
            del self.entries[key]
            return 0
        return int(e[0]) + len(e) - 1

    def begin(self, key: bytes) -> None:
        e = self.entries.get(key)
        if e is None:
            self.entries[key] = array("d", (1.0,))
        else:
            e[0] += 1
            self.entries.move_to_end(key)

    def end(self, key: bytes, failed_at: float | None, limit: int, since: float) -> None:
        """Drop one in-flight count; if *failed_at*, record a failure then (newest *limit* kept:
        enough to tell whether *limit* failures lie in the window)."""
        e = self.entries.get(key)
        if e is None:  # evicted meanwhile
            if failed_at is None:
                return
            e = self.entries[key] = array("d", (0.0,))
        elif e[0] > 0:
            e[0] -= 1
        if failed_at is not None:
            e.append(failed_at)
            if len(e) - 1 > limit:
                del e[1 : len(e) - limit]
        _expire(e, since)
        if len(e) == 1 and not e[0]:
            del self.entries[key]
        else:
            self.entries.move_to_end(key)

    def sweep(self, since: float) -> None:
        """Forget a few keys at the front that have nothing in flight and nothing recent."""
        for _ in range(_SWEEP):
            if not self.entries:
                return
            key, e = next(iter(self.entries.items()))
            if e[0] or (len(e) > 1 and e[-1] >= since):
                return
            del self.entries[key]

    def trim(self, max_keys: int) -> None:
        """Drop least recently touched keys beyond *max_keys*; keys with attempts in flight are
        spared while a few others can go instead."""
        spared = 0
        while len(self.entries) > max_keys:
            key, e = self.entries.popitem(last=False)
            if e[0] and spared < _SWEEP:
                self.entries[key] = e
                spared += 1


def _expire(e: array[float], since: float) -> None:
    i = 1
    while i < len(e) and e[i] < since:
        i += 1
    if i > 1:
        del e[1:i]


class Attempt:
    """One admitted login attempt, counted in flight until settled. Settle it exactly once
    (further calls are no-ops); as a context manager it settles ``None`` unless settled, and
    an attempt dropped unsettled is settled ``None`` too, so in-flight counts cannot leak."""

    __slots__ = ("_account", "_settled", "_source", "_throttle")

    def __init__(self, throttle: Throttle, account: bytes, source: bytes | None) -> None:
        self._throttle, self._account, self._source = throttle, account, source
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    def settle(self, outcome: bool | None) -> None:
        """``True``: logged in (the source becomes known-good for the account); ``False``: a
        failure, recorded now; ``None``: no verdict (temporary failure), leaves no trace."""
        self._throttle._settle(self, outcome)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.settle(None)

    def __del__(self) -> None:
        # Never take the lock here: the collector may run while this thread holds it.
        if not self._settled:
            self._settled = True
            self._throttle._orphans.append((self._account, self._source))


class Throttle:
    """Decides whether a login attempt may go ahead, counting it in flight until its verdict.
    Thread-safe: admit and settle may run on any thread."""

    def __init__(
        self,
        *,
        window: float = 300.0,
        ip_failures: int = 20,
        user_failures: int = 10,
        good_ip_days: float = 30.0,
        max_keys: int = DEFAULT_MAX_KEYS,
        ipv4_prefix: int = 32,
        ipv6_prefix: int = 64,
        exempt: Callable[[str], bool] = _never,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._ips, self._accounts = _Windows(), _Windows()
        self._good: OrderedDict[bytes, float] = OrderedDict()  # account digest + source digest
        self._orphans: deque[tuple[bytes, bytes | None]] = deque()
        self._lock = threading.Lock()
        self.throttled = 0
        self.window = window
        self.ip_failures, self.user_failures = ip_failures, user_failures
        self.good_seconds = good_ip_days * 86400
        self.max_keys = max_keys
        self.ipv4_prefix, self.ipv6_prefix = ipv4_prefix, ipv6_prefix
        self.exempt = exempt
        self.configure(
            window=window,
            ip_failures=ip_failures,
            user_failures=user_failures,
            good_ip_days=good_ip_days,
            max_keys=max_keys,
            ipv4_prefix=ipv4_prefix,
            ipv6_prefix=ipv6_prefix,
            exempt=exempt,
        )

    def configure(
        self,
        *,
        window: float | None = None,
        ip_failures: int | None = None,
        user_failures: int | None = None,
        good_ip_days: float | None = None,
        max_keys: int | None = None,
        ipv4_prefix: int | None = None,
        ipv6_prefix: int | None = None,
        exempt: Callable[[str], bool] | None = None,
    ) -> None:
        """Apply new limits (SIGHUP) keeping every counter, so a reload does not hand
        attackers fresh budgets. ``None`` keeps a setting. Changing a prefix length starts
        new source keys; the old ones expire with the window."""
        w = self.window if window is None else float(window)
        ipf = self.ip_failures if ip_failures is None else int(ip_failures)
        uf = self.user_failures if user_failures is None else int(user_failures)
        good = self.good_seconds if good_ip_days is None else float(good_ip_days) * 86400
        mk = self.max_keys if max_keys is None else int(max_keys)
        p4 = self.ipv4_prefix if ipv4_prefix is None else int(ipv4_prefix)
        p6 = self.ipv6_prefix if ipv6_prefix is None else int(ipv6_prefix)
        if not (w > 0 and ipf >= 1 and uf >= 1 and good >= 0 and mk >= 1):
            raise ValueError("throttle: window, failures and max_keys must be positive")
        if not (8 <= p4 <= 32 and 32 <= p6 <= 128):
            raise ValueError("throttle: ipv4_prefix must be 8..32 and ipv6_prefix 32..128")
        with self._lock:
            self.window, self.ip_failures, self.user_failures = w, ipf, uf
            self.good_seconds, self.max_keys = good, mk
            self.ipv4_prefix, self.ipv6_prefix = p4, p6
            if exempt is not None:
                self.exempt = exempt
            self._ips.trim(mk)
            self._accounts.trim(mk)
            while len(self._good) > mk:
                self._good.popitem(last=False)

    def admit(self, account: str, ip: str) -> Attempt | str:
        """An in-flight ``Attempt`` counted against the source's and the account's budgets
        (as if it failed), or why it is throttled. Settle the attempt when the verdict is in."""
        acct = self._digest(account.encode("utf-8", "surrogatepass"), b"account")
        source, label = self._source(ip)
        if source is not None and self.exempt(ip):
            source = None  # no per-source budget, and no known-good exception
        now = self.clock()
        with self._lock:
            self._housekeeping(now)
            since = now - self.window
            if source is not None and self._ips.load(source, since) >= self.ip_failures:
                self.throttled += 1
                return f"throttled: too many failed logins from {label}"
            if self._accounts.load(acct, since) >= self.user_failures:
                seen = self._good.get(acct + source) if source is not None else None
                if seen is None or now - seen >= self.good_seconds:
                    self.throttled += 1
                    return "throttled: too many failed logins for this user"
            if source is not None:
                self._ips.begin(source)
                self._ips.trim(self.max_keys)
            self._accounts.begin(acct)
            self._accounts.trim(self.max_keys)
            return Attempt(self, acct, source)

    def sizes(self) -> dict[str, int]:
        """Keys held per table (for STATS and tests)."""
        with self._lock:
            return {
                "sources": len(self._ips.entries),
                "accounts": len(self._accounts.entries),
                "known_good": len(self._good),
            }

    # --- internals ------------------------------------------------------------------------

    def _settle(self, attempt: Attempt, outcome: bool | None) -> None:
        now = self.clock()
        with self._lock:
            if attempt._settled:
                return
            attempt._settled = True
            self._housekeeping(now)
            self._end(attempt._account, attempt._source, outcome, now)

    def _end(self, acct: bytes, source: bytes | None, outcome: bool | None, now: float) -> None:
        since = now - self.window
        failed_at = now if outcome is False else None
        if source is not None:
            self._ips.end(source, failed_at, self.ip_failures, since)
        self._accounts.end(acct, failed_at, self.user_failures, since)
        if outcome is True and source is not None:
            pair = acct + source
            self._good[pair] = now
            self._good.move_to_end(pair)
            while len(self._good) > self.max_keys:
                self._good.popitem(last=False)

    def _housekeeping(self, now: float) -> None:
        """Under the lock: settle attempts dropped unsettled, forget a few stale keys."""
        while self._orphans:
            acct, source = self._orphans.popleft()
            self._end(acct, source, None, now)
        since = now - self.window
        self._ips.sweep(since)
        self._accounts.sweep(since)
        for _ in range(_SWEEP):
            if not self._good:
                break
            pair, seen = next(iter(self._good.items()))
            if now - seen < self.good_seconds:
                break
            del self._good[pair]

    def _digest(self, data: bytes, person: bytes) -> bytes:
        return hashlib.blake2b(data, digest_size=16, key=self._secret, person=person).digest()

    def _source(self, ip: str) -> tuple[bytes | None, str]:
        """The source key of *ip* (its address or prefix network) and a label for reasons."""
        if not ip:
            return None, ""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return self._digest(ip.encode("utf-8", "surrogatepass"), b"raw"), "this address"
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if isinstance(addr, ipaddress.IPv4Address):
            bits, prefix, tag = 32, self.ipv4_prefix, b"4"
        else:
            bits, prefix, tag = 128, self.ipv6_prefix, b"6"
        network = int(addr) >> (bits - prefix) << (bits - prefix)
        key = self._digest(tag + bytes((prefix,)) + network.to_bytes(16, "big"), b"source")
        if prefix == bits:
            label = str(type(addr)(network))
        else:
            label = f"{type(addr)(network)}/{prefix}"
        return key, label
