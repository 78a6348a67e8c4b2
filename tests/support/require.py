"""Real components or nothing: without one, a test is skipped locally but fails where
``CI`` or ``NCAUTH_REQUIRE_DB`` is set, so CI can never pass by skipping them."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_REAL = bool(os.environ.get("CI") or os.environ.get("NCAUTH_REQUIRE_DB"))


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when real components are required (CI)."""
    if REQUIRE_REAL:
        pytest.fail(f"{reason} (CI/NCAUTH_REQUIRE_DB is set: real components are required)")
    pytest.skip(reason)
