"""``ncauth demo`` decides a right password, a wrong one and an app password on the
database it makes, shows the traces, never a password, and leaves no file behind."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import leakcheck

from ncauth import demo

VERDICTS = (
    "verdict       OK: password (argon2id)",
    "verdict       REFUSED: wrong password",
    "verdict       OK: app password (token id 1)",
)


def test_demo_command_decides_three_logins(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "ncauth", "demo"],
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    leakcheck.record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    positions = [proc.stdout.find(v) for v in VERDICTS]
    assert -1 not in positions and positions == sorted(positions), proc.stdout
    assert proc.stdout.count("as expected (") == 3 and "3 of 3 verdicts as expected" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp.iterdir()) == []  # the demo database and its config are gone


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_demo_shows_no_password(private_tmp: Path) -> None:
    cred = demo.Credentials(
        leakcheck.register_secret("demo-login-Password-4711"),
        leakcheck.register_secret("abcde-fghij-kmnop-qrstw-xyzAB"),
        leakcheck.register_secret("demo-secret-0123456789abcdefghijklmnopqrstuvwxyz"),
    )
    out = io.StringIO()
    assert demo.run(out, cred) == 0, out.getvalue()
    text = out.getvalue()
    assert all(v in text for v in VERDICTS), text
    assert not any(s in text for s in cred), text
    assert "right password" in text and "wrong password" in text and "app password" in text
    assert list(private_tmp.iterdir()) == []


def test_demo_fails_when_a_verdict_is_not_the_expected_one(private_tmp: Path) -> None:
    """An app password shorter than 22 characters is no app password to Nextcloud (nor to
    ncauth): that login is refused, and the demo must say so and exit non-zero."""
    cred = demo.Credentials("demo-login-Password-4711", "short-app-password", "demo-secret-0123456789")
    out = io.StringIO()
    assert demo.run(out, cred) == demo.EX_SOFTWARE
    text = out.getvalue()
    assert "NOT AS EXPECTED (app password → OK)" in text and "2 of 3 verdicts as expected" in text
    assert list(private_tmp.iterdir()) == []
