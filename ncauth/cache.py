"""The daemon's verified-credentials cache: skip argon2 for a password already found to
match the very same stored hash.

An entry is keyed by HMAC-SHA256 under a random key that lives only in this process,
over the stored hash *as read from the database now* and the password. So a password
change (new hash), a re-hash, or a new passwordsalt simply misses; a disabled user or a
revoked app token is caught by the policy checks that run on every login anyway; and a
memory dump holds no password and nothing that can be attacked offline without the key.

Only matches are kept. A refusal always costs what a real check costs (the policy
spends decoy work for refusals that needed none), whether the account exists or not
and however often it is repeated: a remembered mismatch would save nothing, and
answering it fast would tell an attacker that the account exists.
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
    """A bounded (entries and age) set of HMAC keys of verified credentials; thread-safe."""

    def __init__(
        self, max_entries: int = 10000, max_age: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()
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

    def verified(self, *parts: bytes) -> bool:
        """Were *parts* added, less than ``max_age`` seconds ago?"""
        key, now = self.key(*parts), self.clock()
        with self._lock:
            added = self._entries.get(key)
            if added is None or now - added > self.max_age:
                if added is not None:
                    del self._entries[key]
                self.misses += 1
                return False
            self._entries.move_to_end(key)
            self.hits += 1
            return True

    def add(self, *parts: bytes) -> None:
        """Remember that *parts* verified."""
        key = self.key(*parts)
        with self._lock:
            self._entries[key] = self.clock()
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
