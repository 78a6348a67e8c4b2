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
        "checkpassword in-process, PostgreSQL",
        "checkpassword -> daemon, cache hit",
    ):
        row = whole[(comparison, "ncauth-checkpassword (this tree)")]
        assert row["ratio"] > 0 and row["rss_mib"] > 0 and row["cpu_ratio"] > 0, row
    assert "| whole process | rounds | p50 ms |" in proc.stdout
    _check_quick_scale(json.loads(out.with_name("bench-scale.json").read_text()), proc.stdout)


def _check_quick_scale(result: dict, stdout: str) -> None:
    """bench/scale.py's quick part of ``run.py --quick`` (run once, not a second time on its own):
    200 generated users on PostgreSQL, every path in every match mode, the EXPLAIN of the e-mail
    owner query with and without README's index, memory."""
    cells = {(c["path"], c["match"]): c for c in result["cells"]}
    for match in ("local-part", "address", "email"):
        for path in (
            "login, right password",
            "login, app password",
            "login, unknown user",
            "userdb lookup",
            "Postfix map lookup (recipient/sender)",
            "USERS (account list), whole",
        ):
            assert cells[(path, match)]["p50_ms"] > 0, (path, match)
    assert cells[("userdb lookup by canonical name", "email")]["n"] == 5
    memory = result["memory"]
    assert memory["cache_entries"] == 500 and memory["throttle_sizes"] == {
        "sources": 500,
        "accounts": 500,
        "known_good": 500,
    }
    assert memory["rss_full_mib"] > 0 and memory["throttle_mib"] > 0
    assert "| path | db | match | 200 users p50 (p95) ms | 200 / 200 |" in stdout
    assert "Index Scan using ncauth_email_lower" in stdout


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
