"""Postfix's recipient lookups through the daemon (``socketmap:`` and ``proxy:socketmap:``,
the lines of ``ncauth postfix-config``) next to Postfix's own ``texthash:`` lookup of the
same addresses, measured in the same run by Postfix's own client, ``postmap``.

    .venv/bin/python bench/postfix.py [--quick] [--users N] [--json FILE]

Starts a throwaway MariaDB with N Nextcloud users, the daemon (``ncauth serve`` with
``[postfix] socket``) and a private Postfix (tests/support/postfix_harness.py, needed for
proxymap). Two ways to ask:

* single: one ``postmap -q KEY TABLE`` per sample (a process, a connection, one lookup);
* batch: ``postmap -q - TABLE`` with every address on stdin (one process, one connection,
  as a running smtpd keeps its connection); a sample is that run's time per address.

"warm" repeats keys the daemon has answered before; "cold" is the first lookup (single)
or the first batch after a daemon restart (a new database connection). Prints p50 and p95
with the ratio of p50 to texthash's p50 of the same kind. No figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from samples import Percentiles  # noqa: E402
from support import dbservers, ncschema  # noqa: E402
from support.daemon import Daemon  # noqa: E402
from support.dovecot_harness import dovecot_tmpdir  # noqa: E402
from support.postfix_harness import Postfix, postfix_available, postfix_version  # noqa: E402

D = "example.org"
#: lookups never check a password: any stored hash will do
HASH = "3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"


@dataclass
class Row(Percentiles):
    lookup: str
    kind: str  # single | batch: the texthash row of the same kind is the baseline
    samples_ms: list[float] = field(repr=False)


def single(pf: Postfix, table: str, keys: list[str]) -> list[float]:
    """One ``postmap -q`` per key; every key must be found."""
    samples = []
    for key in keys:
        hit = pf.postmap_query(table, key)
        if hit.value != key:
            raise RuntimeError(f"{table} {key}: {hit}")
        samples.append(hit.seconds * 1000)
    return samples


def batch(pf: Postfix, table: str, keys: list[str]) -> float:
    """One ``postmap -q -`` over *keys*: ms per key; every key must be found."""
    found, seconds = pf.postmap_query_many(table, keys)
    if len(found) != len(keys):
        raise RuntimeError(f"{table}: {len(found)} of {len(keys)} found")
    return seconds * 1000 / len(keys)


def table_text(rows: list[Row]) -> str:
    base = {row.kind: row.p50 for row in rows if row.lookup.startswith("texthash")}
    lines = ["| lookup | postmap | p50 ms | p95 ms | p50 / texthash |", "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        how = "`-q KEY` (one process each)" if row.kind == "single" else "`-q -` batch, per address"
        lines.append(
            f"| {row.lookup} | {how} | {row.p50:.3f} | {row.p95:.3f} | {row.p50 / base[row.kind]:.3g}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples (a smoke run)")
    parser.add_argument("--users", type=int, default=0, help="Nextcloud users (default 1000; --quick 100)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    if reason := postfix_available():
        sys.stderr.write(f"bench/postfix.py needs a Postfix: {reason}\n")
        return 2
    users = args.users or (100 if args.quick else 1000)
    n_single = 10 if args.quick else 100  # warm single lookups
    n_cold = 3 if args.quick else 20  # daemon restarts
    rounds = 3 if args.quick else 20  # warm batches

    work = dovecot_tmpdir("ncauth-bench-postfix-")  # user postfix (proxymap) must reach the socket
    rows: list[Row] = []
    try:
        with dbservers.mariadb_server() as server:
            url = server.create_database("ncauth_bench_postfix")
            engine = sa.create_engine(url)
            ncschema.create_schema(engine, "oc_")
            uids = [f"user{i:05d}" for i in range(users)]
            with engine.begin() as conn:
                for uid in uids:
                    ncschema.add_user(conn, "oc_", uid, HASH)
            engine.dispose()
            keys = [f"{uid}@{D}" for uid in uids]
            texthash = work / "recipients"
            texthash.write_text("".join(f"{key} {key}\n" for key in keys))
            texthash.chmod(0o644)
            config = work / "ncauth.toml"
            config.write_text(
                f'[nextcloud]\ndatabase_url = "{url}"\n[accounts]\ndomains = ["{D}"]\n'
                f'[daemon]\nsocket = "{work}/auth.sock"\n'
                f'[postfix]\nsocket = "{work}/map.sock"\n'
            )
            config.chmod(0o600)
            direct = f"socketmap:unix:{work}/map.sock:recipients"
            tables = {
                "texthash": f"texthash:{texthash}",
                "daemon, socketmap": direct,
                "daemon, proxy:socketmap": f"proxy:{direct}",
            }
            daemon = Daemon(config, work / "auth.sock")
            pf = Postfix(
                work / "postfix",
                recipient_maps=" ".join(tables.values()),
                transport="error:5.0.0 benchmark only",
            )
            try:
                pf.start()

                def restarted(measure: Callable[[], list[float]]) -> list[float]:
                    nonlocal daemon
                    daemon.stop()
                    daemon = Daemon(config, work / "auth.sock")
                    return measure()

                # cold first: the daemon has answered nothing yet
                cold_single = [
                    restarted(lambda i=i: single(pf, direct, [keys[i % len(keys)]]))[0] for i in range(n_cold)
                ]
                cold_batch = [restarted(lambda: [batch(pf, direct, keys)])[0] for _ in range(n_cold)]
                sample = [keys[i * len(keys) // n_single] for i in range(n_single)]
                for name, table in tables.items():
                    batch(pf, table, keys)  # warm: every key asked once before
                    rows.append(Row(f"{name}, warm", "single", single(pf, table, sample)))
                    if name == "daemon, socketmap":
                        rows.append(Row("daemon, socketmap, cold (after a restart)", "single", cold_single))
                for name, table in tables.items():
                    rows.append(
                        Row(f"{name}, warm", "batch", [batch(pf, table, keys) for _ in range(rounds)])
                    )
                    if name == "daemon, socketmap":
                        rows.append(Row("daemon, socketmap, cold (after a restart)", "batch", cold_batch))
            finally:
                pf.stop()
                daemon.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(
        f"Postfix lookups of {users} addresses (Postfix {postfix_version()}), "
        f"{n_single} single / {rounds} batches warm, {n_cold} cold\n\n" + table_text(rows)
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"users": users, "rows": [asdict(r) | {"p50": r.p50, "p95": r.p95} for r in rows]}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
