"""Clean Debian chroots for the tests: built once per suite and package list, used through overlays.

Why this exists: Dovecot 2.4 only comes with Debian 13, and the ``.deb`` must be proven on a
clean Debian 12 and 13, while the project's machines run Debian 12 with much else installed. So
``debootstrap --variant=minbase <suite>`` builds a chroot once and caches it under
/var/cache/ncauth-tests, keyed on the suite and the package list.

A cached chroot is never written to. Each use runs in a private mount namespace (``unshare
--mount``): the chroot is the read-only lower layer of an overlay whose upper layer sits in the
caller's work dir, and /proc, /dev and any ``binds`` (host directories) are mounted into it at
their host paths. Nothing is ever mounted in the host's namespace, so a crashed test leaves no
mounts behind. Successive runs on the same overlay dir see each other's writes (an ``apt-get
install`` first, a Dovecot started on top of it next), as long as they do not run at once.
TCP on 127.0.0.1 is shared with the host (no network namespace).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "NCAUTH_DEPENDS",
    "NCAUTH_RUNTIME",
    "ChrootError",
    "chroot_unavailable",
    "debian_env",
    "debian_root",
    "enter_argv",
    "run_in",
]

CACHE_DIR = Path("/var/cache/ncauth-tests")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The Debian packages ncauth's .deb depends on (debian/control, tests/test_deb.py keeps them
#: alike). Chroots that will install the .deb hold them already, so a test does not download
#: them each time; apt-get still checks the .deb's Depends against what is installed.
NCAUTH_DEPENDS = (
    "adduser",
    "python3",
    "python3-argon2",
    "python3-bcrypt",
    "python3-cryptography",
    "python3-nacl",
    "python3-pymysql",
    "python3-sqlalchemy",
)
#: What chroots that install the .deb hold: its Depends, and python3-cffi-backend, which provides
#: the virtual python3-cffi-backend-api-* they need (debootstrap's --include resolves no virtual
#: packages).
NCAUTH_RUNTIME = (*NCAUTH_DEPENDS, "python3-cffi-backend")
#: Debian 12's chroot (tests/test_deb.py): Dovecot 2.3 for checkpassword, and what the .deb depends on
BOOKWORM_PACKAGES = ("dovecot-core", "dovecot-imapd", *NCAUTH_RUNTIME)
BUILD_TIMEOUT = 1800.0
TOOLS = ("debootstrap", "unshare", "chroot", "nsenter", "mount")


class ChrootError(RuntimeError):
    """A chroot could not be built or entered."""


# Runs inside ``unshare --mount``: every mount below dies with the namespace's last process.
# $1 chroot (read-only lower layer), $2 overlay dir (upper/work/root), then host dirs to bind at
# the same path, then "--" and the command to exec inside the chroot.
_ENTER_SCRIPT = r"""
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
lower=$1 ov=$2; shift 2
mkdir -p "$ov/upper" "$ov/work" "$ov/root"
mount -t overlay ncauth-chroot -o "lowerdir=$lower,upperdir=$ov/upper,workdir=$ov/work" "$ov/root"
mount -t proc proc "$ov/root/proc"
mount --rbind /dev "$ov/root/dev"
while [ "$1" != -- ]; do
  mkdir -p "$ov/root$1"
  mount --bind "$1" "$ov/root$1"
  shift
done
shift
exec chroot "$ov/root" "$@"
"""

_BUILD_SCRIPT = r"""
set -eu
debootstrap --variant=minbase --include="$1" "$4" "$2" "$3"
# debootstrap's own policy-rc.d only lives while it installs; keep one for any later apt run
printf '#!/bin/sh\nexit 101\n' > "$2/usr/sbin/policy-rc.d"
chmod 755 "$2/usr/sbin/policy-rc.d"
chroot "$2" apt-get clean
"""


def enter_argv(chroot: Path, overlay_dir: Path, binds: Sequence[Path], argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``chroot`` through an overlay in ``overlay_dir``
    (upper layer ``overlay_dir/upper``), with ``binds`` mounted at their host paths."""
    return [
        "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        _ENTER_SCRIPT,
        "sh",
        str(chroot),
        str(overlay_dir),
        *map(str, binds),
        "--",
        *argv,
    ]


def _cache_entry(suite: str, packages: Sequence[str]) -> Path:
    """Cache directory for this suite and package list: a changed list gets its own chroot."""
    key = hashlib.sha256("\n".join([suite, "minbase", *sorted(packages)]).encode())
    return CACHE_DIR / f"{suite}-{key.hexdigest()[:16]}"


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path`` here (a tree with mounts in it must never be removed)."""
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def debian_root(suite: str, packages: Sequence[str], *, mirror: str = DEBIAN_MIRROR) -> Path:
    """Return a Debian ``suite`` minbase chroot with ``packages``, building and caching it if needed.

    The chroot is ``/var/cache/ncauth-tests/<suite>-<key>/root`` (key = suite and package list).
    Builds run under an flock and count only once ``complete`` exists, so parallel runs wait for
    one build and a build that died half-way is thrown away and redone, never used. debootstrap
    runs in a private mount namespace, so its /proc and /sys mounts cannot outlive it.
    """
    entry = _cache_entry(suite, packages)
    root = entry / "root"
    marker = entry / "complete"
    if marker.exists():
        return root
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(f"{entry}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return root
        if entry.exists():
            if mounts_below(entry):
                raise ChrootError(f"half-built {entry} still has mounts: {mounts_below(entry)}")
            shutil.rmtree(entry)
        entry.mkdir()
        log = entry / "build.log"
        t0 = time.monotonic()
        with open(log, "wb") as out:
            # the build inherits the lock: if we die, nobody else starts on the dir until it ends
            build = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _BUILD_SCRIPT,
                    "sh",
                    ",".join(packages),
                    str(root),
                    mirror,
                    suite,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=debian_env(),
                start_new_session=True,
                pass_fds=(lock.fileno(),),
            )
        try:
            rc = build.wait(BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()
            rc = -signal.SIGKILL
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            raise ChrootError(f"building the {suite} chroot failed ({rc}), see {log}:\n" + "\n".join(tail))
        marker.write_text(
            f"suite: {suite}\npackages: {' '.join(packages)}\nmirror: {mirror}\n"
            f"debian_version: {(root / 'etc' / 'debian_version').read_text().strip()}\n"
            f"build_seconds: {time.monotonic() - t0:.0f}\n"
        )
    return root


def debian_env() -> dict[str, str]:
    """A plain root environment for programs of the chroot (no pyenv, no venv, no locale)."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
    }


def run_in(root: Path, argv: Sequence[str]) -> str:
    """Run a command inside the chroot without any mounts (enough for ``--version``)."""
    r = subprocess.run(
        ["chroot", str(root), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=debian_env(),
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        raise ChrootError(f"{' '.join(argv)} in {root} failed: {(r.stdout + r.stderr).strip()}")
    return r.stdout.strip()


def chroot_unavailable() -> str | None:
    """Why chroots cannot be used here (not root, tools or overlayfs missing), or None."""
    if os.geteuid() != 0:
        return "chroot tests must run as root (chroot, mount namespaces)"
    missing = [t for t in TOOLS if not shutil.which(t, path=debian_env()["PATH"])]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt-get install debootstrap util-linux mount)"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read().split():
            return "the kernel has no overlay filesystem"
    return None
