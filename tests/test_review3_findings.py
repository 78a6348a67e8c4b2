"""Regression tests from a third review (branch review3): each pins a bug found in the
day's work (``ncauth demo``, ``ncauth doctor``, the error-handling pass), through the
real programs."""

from __future__ import annotations

import sys
from pathlib import Path

from support import leakcheck

NCAUTH = str(Path(sys.executable).parent / "ncauth")


def test_demo_imports_nothing_from_the_working_directory(tmp_path: Path) -> None:
    """``ncauth demo`` ran ``python -m ncauth verify``, and ``-m`` puts the working
    directory first on sys.path: run from a directory another user can write (/tmp, a
    web root), it imported and ran that user's ``ncauth`` package as the admin."""
    planted = tmp_path / "ncauth"
    planted.mkdir()
    marker = tmp_path / "planted-code-ran"
    for name in ("__init__.py", "__main__.py"):
        (planted / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = leakcheck.run([NCAUTH, "demo"], cwd=str(tmp_path), timeout=180)
    assert not marker.exists(), "the demo ran code from its working directory"
    assert proc.returncode == 0, proc.stdout + proc.stderr
