"""What an attacker can learn or spend, measured: the figures behind issue 11's findings 6,
7 and 11, for any checkout of ncauth (so a fix is measured against the code before it, in
the same run on the same machine).

    .venv/bin/python bench/security.py [--code DIR] [--quick]

--code DIR runs the daemon and the CLI from another checkout (e.g. a `git worktree` of an
older commit); the Nextcloud database (SQLite, Nextcloud's default argon2id made by PHP's
password_hash where php is installed) is built by this checkout's tests/support/ncschema.py.
Prints three tables:

* repeated refusals through the daemon: median ms of the first attempt and of repeats, for a
  wrong password, an unknown user, a disabled user and a two-factor user (right password);
* guesses the throttle lets through (default budgets 20 per source, 10 per account): one
  account under several spellings, 40 IPv6 addresses of one /64, an 80-request parallel burst;
* hostile hash rows (t=20000000, m=1 GiB, bcrypt cost 31): wall time and peak RSS of one
  `ncauth verify`, cut off after --cutoff seconds.
No figure is asserted; this is a report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from support import ncschema  # noqa: E402
from support.daemon import Daemon  # noqa: E402

P = "correct horse battery staple"
D = "example.org"
SECRET = "bench-secret"


def php_default_hash(password: str) -> str:
    """Nextcloud's default: PHP's password_hash(PASSWORD_ARGON2ID), m=65536 t=4 p=1."""
    php = shutil.which("php")
    if php:
        return subprocess.run(
            [php, "-r", 'echo "3|" . password_hash($argv[1], PASSWORD_ARGON2ID);', "--", password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    from argon2 import PasswordHasher

    return "3|" + PasswordHasher(time_cost=4, memory_cost=65536, parallelism=1).hash(password)


def cheap_hash(password: str) -> str:
    from argon2 import PasswordHasher

    return "3|" + PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(password)


HOSTILE = {
    "argon2id t=20000000": "3|$argon2id$v=19$m=65536,t=20000000,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
    "argon2id m=1 GiB": "3|$argon2id$v=19$m=1048576,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
    # a well-formed bcrypt hash whose cost says 2^31 rounds
    "bcrypt cost 31": "1|$2y$31$" + "N9qo8uLOickgx2ZMRZoMye" + "IjZAgcfl7p92ldGxad68LJZdL17lhWy",
}


class Setup:
    def __init__(self, code: Path, work: Path) -> None:
        self.code, self.work = code, work
        self.db = work / "nextcloud.db"
        self.url = f"sqlite:///{self.db}"
        engine = sa.create_engine(self.url)
        ncschema.create_schema(engine, "oc_")
        cheap = cheap_hash(P)
        with engine.begin() as conn:
            for uid in ("alice", "dave", "tina"):  # each its own salt, as in real life
                ncschema.add_user(conn, "oc_", uid, php_default_hash(P))
            for uid in ("bob", *tuple(f"user{i}" for i in range(100))):
                ncschema.add_user(conn, "oc_", uid, cheap)
            # older or cheaper hashes than Nextcloud's current parameters (dormant accounts)
            import bcrypt
            from argon2 import PasswordHasher

            ncschema.add_user(
                conn, "oc_", "olga", "1|" + bcrypt.hashpw(P.encode(), bcrypt.gensalt(10)).decode()
            )
            ncschema.add_user(
                conn,
                "oc_",
                "tom",
                "3|" + PasswordHasher(time_cost=2, memory_cost=16384, parallelism=2).hash(P),
            )
            for name, stored in HOSTILE.items():
                ncschema.add_user(conn, "oc_", name.split()[0] + str(len(name)), stored)
            ncschema.disable_user(conn, "oc_", "dave")
            ncschema.add_two_factor(conn, "oc_", "tina", "totp")
        engine.dispose()

    def config(self, name: str, daemon: str, hashing: str = "") -> Path:
        path = self.work / name
        path.write_text(
            f'[nextcloud]\ndatabase_url = "{self.url}"\nsecret = "{SECRET}"\n{hashing}\n'
            f'[accounts]\ndomains = ["{D}", "other.org"]\ndefault_domain = "{D}"\n'
            f'[daemon]\nsocket = "{self.work / (name + ".sock")}"\n{daemon}\n'
        )
        path.chmod(0o600)
        return path

    def python(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            (
                f"import sys; sys.path.insert(0, {str(self.code)!r}); "
                "from ncauth.cli import main; sys.exit(main(sys.argv[1:]))"
            ),
        ]


def start_daemon(setup: Setup, config: Path) -> Daemon:
    """``serve`` of the checkout measured, on the socket *config* names."""
    return Daemon(
        config,
        Path(f"{config}.sock"),
        argv=[*setup.python(), "serve", "--config", str(config)],
        reply_timeout=60,
    )


def auth(d: Daemon, *args: str) -> str:
    """The verdict of one AUTH request."""
    return d.ask("AUTH", *args).verdict


def refusals(setup: Setup, repeats: int) -> list[tuple[str, float, float, str]]:
    """(case, first ms, median repeat ms, verdict) through a daemon with its cache on."""
    d = start_daemon(setup, setup.config("refusals.toml", "throttle = false"))
    rows = []
    try:
        cases = [
            ("wrong password, existing user", f"alice@{D}", "wrong-guess-1"),
            ("unknown user", f"ghost@{D}", "wrong-guess-1"),
            ("disabled user, right password", f"dave@{D}", P),
            ("two-factor user, right password", f"tina@{D}", P),
            ("wrong password, bcrypt cost 10 user", f"olga@{D}", "wrong-guess-1"),
            ("wrong password, argon2id m=16384,t=2,p=2 user", f"tom@{D}", "wrong-guess-1"),
            ("right password, repeated: the cache (for scale)", f"alice@{D}", P),
        ]
        for name, login, password in cases:
            times, verdict = [], ""
            for _ in range(repeats + 1):
                started = time.perf_counter()
                verdict = auth(d, login, password)
                times.append((time.perf_counter() - started) * 1000)
            rows.append((name, times[0], statistics.median(times[1:]), verdict))
    finally:
        d.stop()
    return rows


def throttle(setup: Setup) -> list[tuple[str, int, int]]:
    """(scenario, attempts, attempts decided rather than throttled), default budgets."""
    rows = []
    d = start_daemon(setup, setup.config("spell.toml", "throttle = true"))
    try:
        spellings = [f"bob@{D}", f"BOB@{D}", f"Bob@{D.upper()}", "bob@other.org", "bob"]
        decided = sum(
            auth(d, s, f"guess-{i}", f"rip=198.51.{i}.{j}") != "TEMPFAIL"
            for i, s in enumerate(spellings)
            for j in range(20)
        )
        rows.append(("one account, 5 spellings x 20 guesses, 100 IPv4 sources", 100, decided))
    finally:
        d.stop()
    d = start_daemon(setup, setup.config("v6.toml", "throttle = true"))
    try:
        decided = sum(
            auth(d, f"user{(i * 20 + j) % 100}@{D}", f"guess-{j}", f"rip=2001:db8:7:7::{i + 1:x}")
            != "TEMPFAIL"
            for i in range(40)
            for j in range(20)
        )
        rows.append(("40 addresses of one IPv6 /64 x 20 guesses, many accounts", 800, decided))
    finally:
        d.stop()
    d = start_daemon(setup, setup.config("burst.toml", "throttle = true\nqueue = 200"))
    try:
        with ThreadPoolExecutor(80) as pool:
            verdicts = list(
                pool.map(lambda i: auth(d, f"user{i}@{D}", "guess", "rip=203.0.113.9"), range(80))
            )
        rows.append(
            ("80 parallel guesses from one address, 80 accounts", 80, sum(v != "TEMPFAIL" for v in verdicts))
        )
    finally:
        d.stop()
    return rows


def hostile(setup: Setup, cutoff: float) -> list[tuple[str, str, str]]:
    """(row, wall time, peak RSS of the verify process)."""
    config = setup.config("hostile.toml", "")
    rows = []
    for name in HOSTILE:
        login = f"{name.split()[0]}{len(name)}@{D}"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*setup.python(), "verify", "--config", str(config), "--password-stdin", login],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(P.encode())
        proc.stdin.close()
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                wall = f"{(time.perf_counter() - started) * 1000:.0f} ms (exit {os.waitstatus_to_exitcode(status)})"
                rows.append((name, wall, f"{usage.ru_maxrss / 1024:.0f} MiB"))
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - started > cutoff:
                peak = _rss_kib(proc.pid)
                proc.kill()
                proc.wait()
                rows.append(
                    (
                        name,
                        f"> {cutoff:.0f} s (killed, still hashing)",
                        f"{peak / 1024:.0f} MiB at the cut-off",
                    )
                )
                break
            time.sleep(0.02)
    return rows


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose ncauth is measured")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter cut-off")
    parser.add_argument("--cutoff", type=float, default=30.0, help="seconds before a hostile row is killed")
    args = parser.parse_args()
    repeats, cutoff = (3, 10.0) if args.quick else (10, args.cutoff)
    with tempfile.TemporaryDirectory(prefix="ncauth-bench-") as tmp:
        setup = Setup(args.code.resolve(), Path(tmp))
        print(f"ncauth from {setup.code}\n")
        print("| refusal (through the daemon, cache on) | first attempt ms | repeated, median ms | verdict |")
        print("| --- | --- | --- | --- |")
        for name, first, repeat, verdict in refusals(setup, repeats):
            print(f"| {name} | {first:.1f} | {repeat:.1f} | {verdict} |")
        print("\n| throttle scenario (budgets 20/source, 10/account) | attempts | decided (not throttled) |")
        print("| --- | --- | --- |")
        for name, attempts, decided in throttle(setup):
            print(f"| {name} | {attempts} | {decided} |")
        print("\n| hostile hash row (`ncauth verify`) | wall time | peak RSS |")
        print("| --- | --- | --- |")
        for name, wall, rss in hostile(setup, cutoff):
            print(f"| {name} | {wall} | {rss} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
