"""No secret in any output (a pytest plugin, registered by tests/conftest.py).

Every test's captured stdout/stderr/log, and the output of every program the tests run
(handed over with :func:`record_output`), is searched for the suite's passwords, app
tokens and database secrets; a hit fails the test that produced it.
"""

from __future__ import annotations

import subprocess

import pytest

from . import population

_recorded: list[str] = []
_runtime_secrets: set[str] = set()


def register_secret(secret: str) -> str:
    """Add a secret made at run time (a database password) to the leak check."""
    _runtime_secrets.add(secret)
    return secret


def record_output(*texts: str) -> None:
    """Hand the output of a subprocess (checkpassword, ncauth, Dovecot's log) to the leak check."""
    _recorded.extend(texts)


def run(
    args: list[str], *, input: str | None = None, timeout: float = 60, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program of the suite's (ncauth, lua, fail2ban-regex) to its end, its output
    handed to the leak check; the caller asserts on the exit code."""
    proc = subprocess.run(
        args, input=input, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    record_output(proc.stdout, proc.stderr)
    return proc


def leaked_secrets(texts: list[str]) -> list[str]:
    """The secrets of population.SECRETS that occur in *texts*, shortened for the report."""
    return [
        s[:3] + "…" for s in sorted({*population.SECRETS, *_runtime_secrets}) if any(s in t for t in texts)
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    texts = [content for _, content in report.sections] + _recorded
    _recorded.clear()
    leaked = leaked_secrets(texts)
    if leaked and report.passed:
        report.outcome = "failed"
        report.longrepr = f"secret(s) found in the output of this test: {', '.join(leaked)}"
