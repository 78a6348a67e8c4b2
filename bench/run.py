"""ncauth benchmarks: login latency and throughput of each path, as ratios to one bare
argon2 verify of the same hash measured in the same run (the floor).

    .venv/bin/python bench/run.py [--quick] [--json bench/results/latest.json]

Starts its own throwaway MariaDB (tests/support/dbservers.py), loads users whose hashes PHP's
password_hash made with Nextcloud's defaults (argon2id m=64 MiB t=4 p=1; argon2i m=32 MiB;
bcrypt cost 10), runs the daemon as a real process, and prints one markdown table plus
the machine; the same goes to JSON for comparison across runs. No figure is asserted:
targets are reported next to the measurements.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import argon2.low_level  # noqa: E402
import scale  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import startup  # noqa: E402
from samples import Percentiles  # noqa: E402
from support import dbservers, dovecot_e2e, ncschema  # noqa: E402
from support.checkpassword import checkpassword, request  # noqa: E402
from support.daemon import Daemon  # noqa: E402
from support.dovecot_harness import dovecot_available, make_dovecot_venv  # noqa: E402

from ncauth import config as config_mod  # noqa: E402
from ncauth import hashes  # noqa: E402
from ncauth.policy import Authenticator  # noqa: E402

PASSWORD = "correct horse battery staple"
#: what `pip install 'ncauth[postgresql]'` adds (pyproject.toml's extra)
POSTGRESQL_EXTRA = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
    "postgresql"
]
PHP_HASHES = {
    "argon2id": 'echo "3|" . password_hash($argv[1], PASSWORD_ARGON2ID);',  # PHP defaults: m=65536 t=4 p=1
    "argon2i": 'echo "2|" . password_hash($argv[1], PASSWORD_ARGON2I, ["memory_cost" => 32768]);',
    "bcrypt": 'echo "1|" . password_hash($argv[1], PASSWORD_BCRYPT, ["cost" => 10]);',
}


@functools.cache
def venv() -> Path:
    """Programs run as an admin installs them: a virtualenv from Debian's python with
    `pip install .` (the development interpreter's site-packages would add their own
    start-up cost). Built, or found in its cache, when a benchmark first runs a program."""
    return make_dovecot_venv(ROOT)


def program(name: str) -> Path:
    return venv() / "bin" / name


@dataclass
class Row(Percentiles):
    path: str
    samples_ms: list[float] = field(repr=False)
    note: str = ""
    concurrency: int = 1
    wall_s: float = 0.0
    floor_ms: list[float] = field(default_factory=list, repr=False)  # floor samples paired with these

    def ratio(self, floor: Row) -> float:
        """p50 over the floor's p50; over the paired floor samples where the row has them, so
        that a slow spell of a shared machine falls on both sides of the ratio alike."""
        base = statistics.median(self.floor_ms) if self.floor_ms else floor.p50
        return self.p50 / base

    @property
    def per_second(self) -> float:
        if self.wall_s:
            return len(self.samples_ms) / self.wall_s
        return 1000 / self.p50 if self.p50 else 0.0


#: the concurrency levels each path is measured at (--quick: one level, to exercise the code)
CONCURRENCY: tuple[int, ...] = (1, 2, 8, 32)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def paired(
    fn: Callable[[], object], floor_fn: Callable[[], object], n: int
) -> tuple[list[float], list[float]]:
    """Samples of *fn* and of the floor, taken alternately."""
    samples: list[float] = []
    floor: list[float] = []
    for _ in range(n):
        floor += timed(floor_fn, 1)
        samples += timed(fn, 1)
    return samples, floor


def concurrent(fn: Callable[[int], object], n: int, workers: int) -> tuple[list[float], float]:
    def one(i: int) -> float:
        started = time.perf_counter()
        fn(i)
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        samples = list(pool.map(one, range(n)))
    return samples, time.perf_counter() - started


def php_hash(kind: str) -> str:
    php = shutil.which("php")
    if php:
        return subprocess.run(
            [php, "-r", PHP_HASHES[kind], "--", PASSWORD], capture_output=True, text=True, check=True
        ).stdout
    params = {
        "argon2id": ("3|", argon2.low_level.Type.ID, 65536, 4),
        "argon2i": ("2|", argon2.low_level.Type.I, 32768, 4),
    }
    if kind in params:
        prefix, typ, m, t = params[kind]
        return (
            prefix
            + argon2.low_level.hash_secret(PASSWORD.encode(), os.urandom(16), t, m, 1, 32, typ).decode()
        )
    import bcrypt

    return "1|" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$")


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{int(mem) // 1024 // 1024} GiB",
        "python": platform.python_version(),
        "argon2-cffi": version("argon2-cffi"),
        "pynacl": version("PyNaCl"),
        "kernel": platform.release(),
    }


def start_daemon(config: Path, sock: Path) -> Daemon:
    """The venv's ``ncauth serve``; a cold storm may queue a request for long."""
    return Daemon(
        config, sock, argv=[str(program("ncauth")), "serve", "--config", str(config)], reply_timeout=60
    )


def run_checkpassword(config: Path, user: str, password: str) -> None:
    result = checkpassword(
        config, request(user, password), {"SERVICE": "imap"}, program=program("ncauth-checkpassword")
    )
    if result.code != 0:
        raise RuntimeError(f"checkpassword exited {result.code}: {result.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="the fewest samples that exercise every path (CI smoke run)"
    )
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument(
        "--baseline-venv",
        type=Path,
        help="another installation whose checkpassword joins the whole-process rounds (before/after)",
    )
    args = parser.parse_args()
    n = 2 if args.quick else 30
    storm = 20 if args.quick else 200
    global CONCURRENCY
    CONCURRENCY = (2,) if args.quick else CONCURRENCY

    work = Path(tempfile.mkdtemp(prefix="ncauth-bench-"))
    rows: list[Row] = []
    extra: dict[str, object] = {}
    with dbservers.mariadb_server() as server:
        url = server.create_database("ncauth_bench")
        engine = sa.create_engine(url)
        ncschema.create_schema(engine, "oc_")
        stored = {kind: php_hash(kind) for kind in PHP_HASHES}
        with engine.begin() as conn:
            for kind, h in stored.items():
                ncschema.add_user(conn, "oc_", kind, h)
            ncschema.add_user(conn, "oc_", "disabled", php_hash("argon2id"))
            ncschema.disable_user(conn, "oc_", "disabled")
            ncschema.add_user(conn, "oc_", "twofactor", php_hash("argon2id"))
            ncschema.add_two_factor(conn, "oc_", "twofactor", "totp")
        engine.dispose()
        base = (
            f'[nextcloud]\ndatabase_url = "{url}"\n[accounts]\ndomains = ["example.org"]\n'
            '[userdb]\nuid = "vmail"\nhome = "/var/vmail/{domain}/{local}"\n'
        )
        sock = work / "auth.sock"

        def write(name: str, text: str) -> Path:
            path = work / name
            path.write_text(text)
            path.chmod(0o600)
            return path

        inproc = write("inproc.toml", base)
        cached = write("cached.toml", base + f'[daemon]\nsocket = "{sock}"\n')
        cold = write("cold.toml", base + f'[daemon]\nsocket = "{sock}"\ncache = false\n')
        user = "argon2id@example.org"
        inner = hashes.split(stored["argon2id"])[1].encode()

        # the floor: argon2-cffi alone, same hash
        def bare() -> object:
            return argon2.low_level.verify_secret(inner, PASSWORD.encode(), argon2.low_level.Type.ID)

        def engine() -> object:
            return hashes._sodium_verify(PASSWORD.encode(), inner.decode())

        # ncauth's own argon2 engine for PHP's hash form (libsodium), sampled alternately
        # with the floor: what ncauth adds is measured against it, the ratios against the floor
        engine_samples, floor_samples = paired(engine, bare, n)
        floor = Row("argon2-cffi verify alone (floor)", floor_samples)
        rows.append(floor)
        rows.append(
            Row(
                "libsodium verify alone (ncauth's argon2 engine for this hash)",
                engine_samples,
                floor_ms=floor_samples,
            )
        )
        extra["engine_p50_ms"] = round(statistics.median(engine_samples), 1)
        for kind in ("argon2i", "bcrypt"):
            auth = Authenticator(config_mod.load(str(inproc)))
            rows.append(
                Row(
                    f"in-process decision, {kind} user",
                    timed(lambda k=kind: auth.authenticate(f"{k}@example.org", PASSWORD.encode()), n),
                    note=stored[kind][:14],
                )
            )
            auth.store.close()
        auth = Authenticator(config_mod.load(str(inproc)))
        samples, floor_samples = paired(lambda: auth.authenticate(user, PASSWORD.encode()), bare, n)
        rows.append(Row("in-process decision (Authenticator, warm pool)", samples, floor_ms=floor_samples))
        # timing: every refusal costs what a wrong password costs (decoy argon2 with
        # Nextcloud's parameters for users that do not exist), interleaved to share noise
        refusals = {
            "wrong password": (user, "wrong"),
            "unknown user": ("nobody@example.org", PASSWORD),
            "other domain": ("argon2id@other.tld", PASSWORD),
            "disabled user": ("disabled@example.org", PASSWORD),
            "two-factor user, login password": ("twofactor@example.org", PASSWORD),
        }
        timing: dict[str, list[float]] = {name: [] for name in refusals}
        for _ in range(n):
            for name, (login, password) in refusals.items():
                timing[name] += timed(lambda: auth.authenticate(login, password.encode()), 1)
        auth.store.close()
        base_ms = statistics.median(timing["wrong password"])
        for name, samples in timing.items():
            rows.append(Row(f"refusal: {name}", samples))
        extra["refusal_medians_ms"] = {name: round(statistics.median(v), 1) for name, v in timing.items()}
        extra["refusal_max_deviation"] = round(
            max(abs(statistics.median(v) / base_ms - 1) for v in timing.values()), 3
        )
        rows.append(
            Row(
                "`ncauth verify` (whole command)",
                timed(
                    lambda: subprocess.run(
                        [str(program("ncauth")), "verify", "--config", str(inproc), user, "--password-stdin"],
                        input=PASSWORD.encode(),
                        capture_output=True,
                        check=True,
                    ),
                    max(3, n // 3),
                ),
            )
        )
        rows.append(
            Row(
                "checkpassword, in-process",
                timed(lambda: run_checkpassword(inproc, user, PASSWORD), max(3, n // 3)),
            )
        )

        d = start_daemon(cold, sock)
        d.ask("AUTH", user, PASSWORD)
        samples, floor_samples = paired(lambda: d.ask("AUTH", user, PASSWORD), bare, n)
        rows.append(Row("daemon, cold (cache off)", samples, floor_ms=floor_samples))
        for c in CONCURRENCY:
            samples, wall = concurrent(lambda i: d.ask("AUTH", user, PASSWORD), max(n, 4 * c), c)
            rows.append(Row(f"daemon, cold, concurrency {c}", samples, concurrency=c, wall_s=wall))
        d.stop()

        d = start_daemon(cached, sock)
        d.ask("AUTH", user, PASSWORD)
        repeated = Row("daemon, repeated (cache hit)", timed(lambda: d.ask("AUTH", user, PASSWORD), n * 4))
        rows.append(repeated)
        for c in CONCURRENCY:
            samples, wall = concurrent(lambda i: d.ask("AUTH", user, PASSWORD), max(4 * n, 8 * c), c)
            rows.append(Row(f"daemon, repeated, concurrency {c}", samples, concurrency=c, wall_s=wall))
        relay = Row(
            "checkpassword -> daemon, repeated", timed(lambda: run_checkpassword(cached, user, PASSWORD), n)
        )
        rows.append(relay)
        extra["checkpassword_relay_overhead_ms"] = round(relay.p50 - repeated.p50, 1)
        d.stop()

        # memory: a storm of distinct wrong passwords (every one a cold 64 MiB argon2 run)
        d = start_daemon(cold, sock)
        workers = int(d.ask("STATS").fields["workers"])
        samples, wall = concurrent(lambda i: d.ask("AUTH", user, f"wrong-{i}"), storm, 32)
        rows.append(
            Row(f"daemon storm: {storm} cold wrong-password logins", samples, concurrency=32, wall_s=wall)
        )
        extra["storm_logins"] = storm
        extra["daemon_peak_rss_mib"] = round(d.rss_peak_kib() / 1024, 1)
        extra["daemon_rss_budget_mib"] = 100 + workers * 64
        extra["workers"] = workers
        d.stop()

        whole = whole_processes(url, stored["argon2id"], work, 2 if args.quick else 20, args.baseline_venv)
        dovecot_paths(server, url, n, storm, rows, extra)

    shutil.rmtree(work, ignore_errors=True)
    report(rows, floor, extra, args, whole)
    json_path = Path(args.json)
    scale.run_and_report(args.quick, json_path.with_name(f"{json_path.stem}-scale.json"))
    return 0


def whole_processes(
    url: str, stored_hash: str, work: Path, rounds: int, baseline: Path | None, only: str = ""
) -> list[startup.Comparison]:
    """checkpassword as whole processes against minimal Python processes (bench/startup.py):
    in-process on this MariaDB, on an SQLite copy of the user and on a PostgreSQL copy
    (psycopg from the postgresql extra), and relayed to a daemon whose cache holds the login."""
    user = "argon2id@example.org"
    lite = work / "nextcloud.db"
    one_user_database(f"sqlite:///{lite}", stored_hash)
    sock = work / "startup.sock"

    def config(name: str, db_url: str, daemon: Path | None = None) -> Path:
        path = work / f"startup-{name}.toml"
        path.write_text(
            f'[nextcloud]\ndatabase_url = "{db_url}"\n[accounts]\ndomains = ["example.org"]\n'
            '[userdb]\nuid = "vmail"\nhome = "/var/vmail/{domain}/{local}"\n'
            + (f'[daemon]\nsocket = "{daemon}"\n' if daemon else "")
        )
        path.chmod(0o600)
        return path

    configs = {"MariaDB": config("MariaDB", url), "SQLite": config("SQLite", f"sqlite:///{lite}")}
    configs["relay"] = config("relay", url, sock)
    venvs = {"this tree": venv(), **({"baseline": baseline} if baseline else {})}
    d = start_daemon(configs["relay"], sock)
    try:
        d.ask("AUTH", user, PASSWORD)  # the cache now holds this login
        found = startup.comparisons(venvs, configs, stored_hash, user, PASSWORD, sock)
        with dbservers.postgres_server() as postgres:
            pg_url = postgres.create_database("ncauth_startup")
            one_user_database(pg_url, stored_hash)
            # with the PostgreSQL extra, as `pip install 'ncauth[postgresql]'` installs it (a
            # baseline needs it too)
            pg_venvs = {**venvs, "this tree": make_dovecot_venv(ROOT, extra_requirements=POSTGRESQL_EXTRA)}
            pg = {"PostgreSQL": config("PostgreSQL", pg_url)}
            found += startup.comparisons(pg_venvs, pg, stored_hash, user, PASSWORD, None)
            found = [c for c in found if only in c.name]
            for c in found:
                c.measure(rounds)
    finally:
        d.stop()
    return found


def one_user_database(url: str, stored_hash: str) -> None:
    """Nextcloud's tables at *url* with the one user the whole-process rounds log in as."""
    engine = sa.create_engine(url)
    ncschema.create_schema(engine, "oc_")
    with engine.begin() as conn:
        ncschema.add_user(conn, "oc_", "argon2id", stored_hash)
    engine.dispose()


def startup_only(rounds: int, baseline: Path | None, only: str = "") -> None:
    """bench/startup.py on its own: a MariaDB, one user, the whole-process rounds."""
    work = Path(tempfile.mkdtemp(prefix="ncauth-startup-"))
    with dbservers.mariadb_server() as server:
        url = server.create_database("ncauth_startup")
        stored = php_hash("argon2id")
        one_user_database(url, stored)
        found = whole_processes(url, stored, work, rounds, baseline, only)
    shutil.rmtree(work, ignore_errors=True)
    m = machine()
    print(f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']} (the benchmark's own)\n")
    startup.report(found)


class RssSampler:
    """Peak summed RSS of the processes whose command line matches, sampled every 20 ms."""

    def __init__(self, match: Callable[[str], bool]) -> None:
        import threading

        self.match, self.peak_kib, self._stop = match, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmd = (
                        Path(f"/proc/{pid}/cmdline")
                        .read_bytes()
                        .replace(b"\0", b" ")
                        .decode(errors="replace")
                    )
                    if self.match(cmd):
                        total += next(
                            int(line.split()[1])
                            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                            if line.startswith("VmRSS:")
                        )
                except (OSError, StopIteration):
                    continue
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_kib / 1024, 1)


def dovecot_paths(
    server: dbservers.Server, url: str, n: int, storm: int, rows: list[Row], extra: dict[str, object]
) -> None:
    """Logins through a real Dovecot 2.3 on its SASL socket (as Postfix authenticates), for
    every mode ncauth generates, cold (a user's first login) and repeated."""
    if reason := dovecot_available():
        extra["dovecot"] = f"skipped: {reason}"
        return
    # fresh users for cold logins: PHP-made argon2id hashes with Nextcloud's defaults
    cold_users = [f"cold{i}@example.org" for i in range(3 * n)]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for login in cold_users:
            ncschema.add_user(conn, "oc_", login.split("@")[0], php_hash("argon2id"))
    engine.dispose()
    fresh = iter(cold_users)
    user = "argon2id@example.org"
    paths = [
        ("checkpassword", False, "Dovecot -> checkpassword (in-process)"),
        ("checkpassword", True, "Dovecot -> checkpassword -> daemon"),
        ("lua", True, "Dovecot -> Lua -> daemon"),
        ("sql", False, "Dovecot SQL passdb, auth_cache on"),
    ]
    for mode, with_daemon, label in paths:
        dovecot, daemon = dovecot_e2e.start(mode, "2.3", with_daemon, server, url, "oc_", venv())
        try:

            def login(who: str = user, password: str = PASSWORD) -> None:
                verdict, fields = dovecot.sasl_plain(who, password, rip="198.51.100.1")
                if verdict != "OK" and password == PASSWORD:
                    raise RuntimeError(f"{label}: {who}: {verdict} {fields}")

            if mode == "checkpassword" and not with_daemon:
                rows.append(Row(label, timed(login, max(3, n // 2))))
            else:
                rows.append(Row(f"{label}, cold", timed(lambda: login(next(fresh)), n)))
                login()
                rows.append(Row(f"{label}, repeated", timed(login, n * 2)))
                for c in CONCURRENCY:
                    samples, wall = concurrent(lambda i: login(), max(2 * n, 4 * c), c)
                    rows.append(
                        Row(f"{label}, repeated, concurrency {c}", samples, concurrency=c, wall_s=wall)
                    )
            if mode == "lua":
                sampler = RssSampler(lambda cmd: cmd.startswith("dovecot/auth"))
                daemon_before = daemon.rss_peak_kib()
                samples, wall = concurrent(lambda i: login(user, f"wrong-{i}"), storm, 32)
                extra["dovecot_auth_tree_peak_rss_mib"] = sampler.stop()
                extra["lua_storm_daemon_peak_rss_mib"] = round(
                    max(daemon_before, daemon.rss_peak_kib()) / 1024, 1
                )
                rows.append(
                    Row(
                        f"{label}: storm of {storm} wrong-password logins",
                        samples,
                        concurrency=32,
                        wall_s=wall,
                    )
                )
        finally:
            dovecot.stop()
            if daemon is not None:
                daemon.stop()
            shutil.rmtree(dovecot.root, ignore_errors=True)
    # Dovecot's SQL passdb without its cache: the same snippet with auth_cache_size = 0
    dovecot, _ = dovecot_e2e.start("sql", "2.3", False, server, url, "oc_", venv())
    dovecot.stop()
    dovecot.auth_config = dovecot.auth_config.replace("auth_cache_size = 10M", "auth_cache_size = 0")
    dovecot.start()
    try:
        rows.append(
            Row(
                "Dovecot SQL passdb, auth_cache off",
                timed(lambda: dovecot.sasl_plain(user, PASSWORD, rip="198.51.100.1"), n),
            )
        )
        for c in CONCURRENCY:
            samples, wall = concurrent(
                lambda i: dovecot.sasl_plain(user, PASSWORD, rip="198.51.100.1"), max(n, 2 * c), c
            )
            rows.append(
                Row(
                    f"Dovecot SQL passdb, auth_cache off, concurrency {c}",
                    samples,
                    concurrency=c,
                    wall_s=wall,
                )
            )
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)


def report(
    rows: list[Row],
    floor: Row,
    extra: dict[str, object],
    args: argparse.Namespace,
    whole: list[startup.Comparison],
) -> None:
    m = machine()
    print(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Python {m['python']}, "
        f"argon2-cffi {m['argon2-cffi']}, PyNaCl {m['pynacl']}, Linux {m['kernel']}\n"
    )
    print("| path | p50 ms | p95 ms | logins/s | p50 / floor |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r.path} | {r.p50:.1f} | {r.p95:.1f} | {r.per_second:.1f} | {r.ratio(floor):.2f}x |")
    cold = next(r for r in rows if r.path == "daemon, cold (cache off)")
    repeated = next(r for r in rows if r.path == "daemon, repeated (cache hit)")
    print("\nTargets (issue: daemon):")
    print(
        f"- cold daemon login / floor = {cold.ratio(floor):.2f}, floor sampled alternately with it "
        f"(target <= 1.10); ncauth's own share: {cold.p50 - extra['engine_p50_ms']:.1f} ms above libsodium alone"
    )
    print(f"- repeated daemon login / floor = {repeated.p50 / floor.p50:.3f} (target <= 0.15)")
    print(
        f"- checkpassword -> daemon overhead = {extra['checkpassword_relay_overhead_ms']} ms (target <= 40 ms)"
    )
    print(
        f"- daemon peak RSS in a {extra['storm_logins']}-login storm = {extra['daemon_peak_rss_mib']} MiB "
        f"(budget 100 + {extra['workers']} workers x 64 = {extra['daemon_rss_budget_mib']} MiB)"
    )
    print(
        f"- refusal medians {extra['refusal_medians_ms']} ms: largest deviation from the wrong-password "
        f"median {extra['refusal_max_deviation'] * 100:.1f} % (target <= 10 %)"
    )
    by_path = {r.path: r for r in rows}
    lua = by_path.get("Dovecot -> Lua -> daemon, repeated")
    sql = by_path.get("Dovecot SQL passdb, auth_cache on, repeated")
    if lua and sql:
        print(
            f"- Lua -> daemon repeated login p50 {lua.p50:.1f} ms vs Dovecot SQL passdb with auth_cache "
            f"{sql.p50:.1f} ms (target: faster)"
        )
    if "dovecot_auth_tree_peak_rss_mib" in extra:
        print(
            f"- {extra['storm_logins']}-login storm through Lua: Dovecot auth processes peak "
            f"{extra['dovecot_auth_tree_peak_rss_mib']} MiB, daemon peak {extra['lua_storm_daemon_peak_rss_mib']} MiB"
        )
    if "dovecot" in extra:
        print(f"- Dovecot paths {extra['dovecot']}")
    print()
    extra["whole_processes"] = startup.report(whole)
    result = {
        "machine": m,
        "quick": args.quick,
        "rows": [
            {
                **{k: v for k, v in asdict(r).items() if k not in ("samples_ms", "floor_ms")},
                "p50_ms": round(r.p50, 2),
                "p95_ms": round(r.p95, 2),
                "logins_per_s": round(r.per_second, 2),
                "ratio_to_floor": round(r.ratio(floor), 3),
            }
            for r in rows
        ],
        **extra,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    raise SystemExit(main())
