"""Failure throttling for the daemon: a password-spraying client or a distributed guess
at one account cannot burn the workers, and the real user keeps logging in.

Two sliding windows count failed logins (wrong password, unknown or refused user):

* per remote IP: past ``ip_failures`` failures in ``window`` seconds, that IP gets
  TEMPFAIL "throttled" at once, before any worker or database is involved. Addresses in
  ``[accounts] trusted_networks`` (a webmail host speaks for many users) and requests
  without an address are exempt.
* per login: past ``user_failures`` failures in ``window`` seconds from any addresses,
  that login is throttled too - except from addresses where it logged in successfully
  within ``good_ip_days``, so an attack on an account does not lock its owner out.

Throttled answers are temporary failures: mail clients retry later instead of dropping
the saved password, and an attacker learns nothing. Memory is bounded (``max_keys``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class _Windows:
    """Failure timestamps per key, oldest keys dropped beyond *max_keys*."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.times: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, key: str, since: float) -> int:
        q = self.times.get(key)
        if q is None:
            return 0
        while q and q[0] < since:
            q.popleft()
        if not q:
            del self.times[key]
            return 0
        return len(q)

    def add(self, key: str, now: float, cap: int) -> None:
        q = self.times.get(key)
        if q is None:
            q = self.times[key] = deque(maxlen=cap + 1)
        q.append(now)
        self.times.move_to_end(key)
        while len(self.times) > self.max_keys:
            self.times.popitem(last=False)


class Throttle:
    """Decides whether a request is throttled, and learns from each verdict."""

    def __init__(self, *, window: float = 300.0, ip_failures: int = 20, user_failures: int = 10,
                 good_ip_days: float = 30.0, max_keys: int = 100_000, exempt: Callable[[str], bool] = lambda ip: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.ip_failures, self.user_failures = window, ip_failures, user_failures
        self.good_seconds = good_ip_days * 86400
        self.exempt, self.clock = exempt, clock
        self._ips, self._users = _Windows(max_keys), _Windows(max_keys)
        self._good: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self.throttled = 0

    def check(self, login: str, ip: str) -> str:
        """Why this request is throttled, or "" when it may go ahead."""
        login = login.lower()
        now = self.clock()
        with self._lock:
            if ip and not self.exempt(ip) and self._ips.count(ip, now - self.window) >= self.ip_failures:
                self.throttled += 1
                return f"throttled: too many failed logins from {ip}"
            if self._users.count(login, now - self.window) >= self.user_failures:
                good = self._good.get((login, ip))
                if not (ip and good is not None and now - good < self.good_seconds):
                    self.throttled += 1
                    return "throttled: too many failed logins for this user"
            return ""

    def record(self, login: str, ip: str, success: bool) -> None:
        """Learn from a verdict (temporary failures teach nothing)."""
        login = login.lower()
        now = self.clock()
        with self._lock:
            if success:
                if ip:
                    self._good[(login, ip)] = now
                    self._good.move_to_end((login, ip))
                    while len(self._good) > self.max_keys:
                        self._good.popitem(last=False)
                return
            if ip and not self.exempt(ip):
                self._ips.add(ip, now, self.ip_failures)
            self._users.add(login, now, self.user_failures)
