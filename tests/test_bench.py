"""The benchmarks run (``bench/run.py --quick``, as CI's smoke run; ``bench/postfix.py
--quick``) and report every path with a ratio to its baseline. Nothing here asserts a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.dovecot_harness import dovecot_available
from support.leakcheck import record_output
from support.postfix_harness import postfix_available
from support.require import unavailable

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_quick_benchmark_reports_every_path(tmp_path: Path) -> None:
    if reason := dovecot_available():
        unavailable(f"the benchmark drives a real Dovecot: {reason}")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    paths = {row["path"] for row in result["rows"]}
    for expected in (
        "argon2-cffi verify alone (floor)",
        "`ncauth verify` (whole command)",
        "daemon, cold (cache off)",
        "daemon, repeated (cache hit)",
        "checkpassword -> daemon, repeated",
        "Dovecot -> checkpassword (in-process)",
        "Dovecot -> Lua -> daemon, repeated",
        "Dovecot SQL passdb, auth_cache on, repeated",
        "Dovecot SQL passdb, auth_cache off",
    ):
        assert expected in paths, expected
    assert all(row["ratio_to_floor"] > 0 for row in result["rows"])
    assert result["daemon_peak_rss_mib"] > 0 and result["dovecot_auth_tree_peak_rss_mib"] > 0
    assert "| path | p50 ms | p95 ms | logins/s | p50 / floor |" in proc.stdout
    # the whole-process ratios: checkpassword against minimal Python processes (bench/startup.py)
    whole = {(row["comparison"], row["program"]): row for row in result["whole_processes"]}
    for comparison in (
        "checkpassword in-process, MariaDB",
        "checkpassword in-process, SQLite",
        "checkpassword -> daemon, cache hit",
    ):
        row = whole[(comparison, "ncauth-checkpassword (this tree)")]
        assert row["ratio"] > 0 and row["rss_mib"] > 0 and row["cpu_ratio"] > 0, row
    assert "| whole process | rounds | p50 ms |" in proc.stdout


def test_quick_postfix_benchmark_reports_every_lookup(tmp_path: Path) -> None:
    if reason := postfix_available():
        unavailable(f"the benchmark drives a real Postfix: {reason}")
    out = tmp_path / "postfix.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "postfix.py"), "--quick", "--users", "20", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(row["lookup"], row["kind"]): row for row in json.loads(out.read_text())["rows"]}
    for kind in ("single", "batch"):
        for lookup in (
            "texthash, warm",
            "daemon, socketmap, warm",
            "daemon, socketmap, cold (after a restart)",
            "daemon, proxy:socketmap, warm",
        ):
            assert rows[(lookup, kind)]["p50"] > 0, (lookup, kind)
    assert "| lookup | postmap | p50 ms | p95 ms | p50 / texthash |" in proc.stdout
