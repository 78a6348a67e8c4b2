"""Whole-process cost of ``ncauth-checkpassword``, as Dovecot 2.3 starts it for every login,
against the least a Python process can do for the same answer:

* in-process decision (no daemon), right password, Nextcloud's default argon2id hash,
  against a minimal Python process that verifies the same hash with libsodium (PyNaCl)
  and exits (targets: time <= 1.3x, peak RSS <= 1.2x);
* relayed to the daemon, cache hit, against a minimal Python process that connects to
  the same socket, asks the same question and reads the answer (target: time <= 1.5x).

Each round runs the floor and every program once, in turn, so that a slow spell of a
shared machine falls on all of them; the figures are medians over the rounds, the peak
RSS is each child's own (``wait4``'s ``ru_maxrss``). ``--baseline-venv`` adds another
installation's programs to the same rounds (the before of a before/after).

    .venv/bin/python bench/startup.py [--pairs 20] [--baseline-venv /path/to/venv]

bench/run.py runs this with its own MariaDB; standalone it starts one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the minimal process that verifies the hash: interpreter start, PyNaCl, one argon2 run
BARE_VERIFY = """\
import sys
import nacl.pwhash
sys.exit(0 if nacl.pwhash.verify(sys.argv[1].encode(), sys.argv[2].encode()) else 1)
"""
#: the minimal socket client: interpreter start, one request, the answer's two lines
BARE_CLIENT = """\
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"VERSION\\t1\\t0\\nAUTH\\t1\\t%s\\t%s\\tservice=imap\\n" % (sys.argv[2].encode(), sys.argv[3].encode()))
data = b""
while data.count(b"\\n") < 2:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit(111)
    data += chunk
sys.exit(0 if data.split(b"\\n")[1].startswith(b"OK\\t") else 1)
"""
#: the environment Dovecot gives checkpassword (no PATH)
DOVECOT_ENV = {"PROTO": "TCP", "SERVICE": "imap", "TCPLOCALIP": "127.0.0.1", "TCPREMOTEIP": "198.51.100.1"}


#: Starts each measured program and reports its wall time and peak RSS. A separate small
#: process, because Linux counts in a child's ``ru_maxrss`` the peak RSS of the process
#: it was forked from, up to its exec: started from this benchmark (SQLAlchemy and all
#: loaded), every small child would report the benchmark's own size.
LAUNCHER = """\
import fcntl, json, os, sys, tempfile, time
def high(fd):  # above 4: a dup2 onto the fd itself would leave it close-on-exec
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile() as err:
        null = high(os.open(os.devnull, os.O_RDWR))
        fds = [null, high(os.dup(err.fileno()))]
        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                   (os.POSIX_SPAWN_DUP2, fds[1], 2), (os.POSIX_SPAWN_DUP2, null, 4)]
        if job["fd3"] is not None:
            r, w = os.pipe()
            os.write(w, job["fd3"].encode("latin-1"))
            os.close(w)
            fds.append(high(r))
            actions.append((os.POSIX_SPAWN_DUP2, fds[-1], 3))
        started = time.perf_counter()
        pid = os.posix_spawn(job["argv"][0], job["argv"], job["env"], file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        ms = (time.perf_counter() - started) * 1000
        for fd in fds:
            os.close(fd)
        err.seek(0)
        out = {"ms": ms, "rss_kib": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status),
               "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000,
               "stderr": err.read().decode(errors="replace")[-2000:]}
    print(json.dumps(out), flush=True)
"""


class Launcher:
    """The running LAUNCHER: one program at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, label: str, argv: list[str], fd3: bytes | None) -> tuple[float, float, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        job = {"argv": argv, "env": DOVECOT_ENV, "fd3": None if fd3 is None else fd3.decode("latin-1")}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        if result["code"] != 0:
            raise RuntimeError(f"{label}: exit {result['code']}: {result['stderr']}")
        return result["ms"], result["cpu_ms"], result["rss_kib"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@dataclass
class Program:
    """One command of a round; *fd3* is what it finds on fd 3 (checkpassword's request)."""

    label: str
    argv: list[str]
    fd3: bytes | None = None
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)

    def run(self, launcher: Launcher) -> None:
        """Run once; record wall time and the child's own peak RSS. Anything but exit 0 is
        a broken benchmark, not a figure."""
        ms, cpu_ms, rss_kib = launcher.run(self.label, self.argv, self.fd3)
        self.ms.append(ms)
        self.cpu_ms.append(cpu_ms)
        self.rss_kib.append(rss_kib)

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def cpu_p50(self) -> float:
        return statistics.median(self.cpu_ms)

    @property
    def rss_mib(self) -> float:
        return statistics.median(self.rss_kib) / 1024


@dataclass
class Comparison:
    """Programs measured against one floor, round by round."""

    name: str
    floor: Program
    programs: list[Program]
    target_time: float
    target_rss: float | None = None

    def measure(self, rounds: int) -> None:
        launcher = Launcher()
        try:
            for program in (self.floor, *self.programs):  # one unmeasured run each: caches warm
                program.run(launcher)
                program.ms.clear()
                program.cpu_ms.clear()
                program.rss_kib.clear()
            for i in range(rounds):
                order = [self.floor, *self.programs]
                if i % 2:  # alternate who goes first, so that neither always follows the other
                    order.reverse()
                for program in order:
                    program.run(launcher)
        finally:
            launcher.close()

    def ratio(self, program: Program) -> float:
        return program.p50 / self.floor.p50

    def spread(self, program: Program) -> tuple[float, float]:
        """The quartiles of the per-round ratios: the noise around the median's ratio."""
        ratios = sorted(a / b for a, b in zip(program.ms, self.floor.ms, strict=True))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        return q[0], q[2]

    def rows(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for p in (self.floor, *self.programs):
            lo, hi = self.spread(p)
            out.append(
                {
                    "comparison": self.name,
                    "program": p.label,
                    "rounds": len(p.ms),
                    "p50_ms": round(p.p50, 1),
                    "ratio": round(self.ratio(p), 3),
                    "ratio_q1": round(lo, 3),
                    "ratio_q3": round(hi, 3),
                    "cpu_p50_ms": round(p.cpu_p50, 1),
                    "cpu_ratio": round(p.cpu_p50 / self.floor.cpu_p50, 3),
                    "rss_mib": round(p.rss_mib, 1),
                    "rss_ratio": round(p.rss_mib / self.floor.rss_mib, 3),
                }
            )
        return out


def report(comparisons: Sequence[Comparison]) -> list[dict[str, object]]:
    """Print one markdown table; the rows, for JSON."""
    rows = [row for c in comparisons for row in c.rows()]
    print(
        "| whole process | rounds | p50 ms | / floor (quartiles of the rounds) | CPU ms | / floor "
        "| peak RSS MiB | / floor |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['comparison']}: {r['program']} | {r['rounds']} | {r['p50_ms']} | {r['ratio']:.2f}x "
            f"({r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}) | {r['cpu_p50_ms']} | {r['cpu_ratio']:.2f}x "
            f"| {r['rss_mib']} | {r['rss_ratio']:.2f}x |"
        )
    print("\nTargets (issue 16: whole processes, medians of alternated rounds):")
    for c in comparisons:
        for p in c.programs:
            rss = (
                f"; peak RSS {p.rss_mib / c.floor.rss_mib:.2f}x (target <= {c.target_rss})"
                if c.target_rss
                else ""
            )
            print(f"- {c.name}, {p.label}: {c.ratio(p):.2f}x (target <= {c.target_time}){rss}")
    return rows


def comparisons(
    venvs: dict[str, Path],
    configs: dict[str, Path],
    stored_hash: str,
    user: str,
    password: str,
    socket_path: Path | None,
) -> list[Comparison]:
    """The comparisons for each installation in *venvs* (label -> venv) and each in-process
    config in *configs* (label -> config file; "relay" is the daemon's config)."""
    first = next(iter(venvs.values()))
    python = str(first / "bin" / "python")
    request = user.encode() + b"\0" + password.encode() + b"\0\0"

    def checkpassword(label: str, venv: Path, config: Path, *relay: str) -> Program:
        argv = [str(venv / "bin" / "ncauth-checkpassword"), "--config", str(config), *relay, "/bin/true"]
        return Program(label, argv, request)

    out = []
    inner = stored_hash.split("|", 1)[1]
    for db, config in configs.items():
        if db == "relay":
            continue
        out.append(
            Comparison(
                f"checkpassword in-process, {db}",
                Program("libsodium verify process (floor)", [python, "-c", BARE_VERIFY, inner, password]),
                [checkpassword(f"ncauth-checkpassword ({v})", venv, config) for v, venv in venvs.items()],
                1.3,
                1.2,
            )
        )
    if socket_path is not None and "relay" in configs:
        out.append(
            Comparison(
                "checkpassword -> daemon, cache hit",
                Program(
                    "socket client process (floor)",
                    [python, "-c", BARE_CLIENT, str(socket_path), user, password],
                ),
                [
                    # the args `ncauth dovecot-config` writes with a daemon configured (a
                    # baseline older than --socket ignores it and reads its config first)
                    checkpassword(
                        f"ncauth-checkpassword ({v})", venv, configs["relay"], "--socket", str(socket_path)
                    )
                    for v, venv in venvs.items()
                ],
                1.5,
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pairs", type=int, default=20, help="rounds (each runs the floor and every program)"
    )
    parser.add_argument(
        "--baseline-venv", type=Path, help="another installation to measure in the same rounds"
    )
    parser.add_argument("--only", default="", help="only the comparisons whose name contains this")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "bench")]
    import run

    run.startup_only(args.pairs, args.baseline_venv, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
