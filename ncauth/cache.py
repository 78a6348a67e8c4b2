"""The daemon's verified-credentials cache: skip argon2 for a password already checked
against the very same stored hash.

An entry is keyed by HMAC-SHA256 under a random key that lives only in this process,
over the stored hash *as read from the database now* and the password. So a password
change (new hash), a re-hash, or a new passwordsalt simply misses; a disabled user or a
revoked app token is caught by the policy checks that run on every login anyway; and a
memory dump holds no password and nothing that can be attacked offline without the key.
Negative entries (this password does not match this hash) are kept too, so a client
retrying a stale password costs one database read, not one argon2 run. The decoy work
for unknown users is cached the same way, so repeated attempts look alike whether or
not the user exists.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class VerifiedCache:
    """A bounded (entries and age) map from HMAC keys to verdicts; thread-safe."""

    def __init__(self, max_entries: int = 10000, max_age: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.max_age = max_age
        self.clock = clock
        self.hits = 0
        self.misses = 0

    def key(self, *parts: bytes) -> bytes:
        """The cache key of *parts* (length-prefixed, so parts cannot run into each other)."""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def get(self, key: bytes) -> bool | None:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry[0] > self.max_age:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: bytes, verdict: bool) -> None:
        with self._lock:
            self._entries[key] = (self.clock(), verdict)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def remember(self, parts: tuple[bytes, ...], compute: Callable[[], bool]) -> tuple[bool, bool]:
        """(verdict, was_cached) for *parts*, computing and storing it on a miss."""
        key = self.key(*parts)
        cached = self.get(key)
        if cached is not None:
            return cached, True
        verdict = compute()
        self.put(key, verdict)
        return verdict, False

    def __len__(self) -> int:
        return len(self._entries)
