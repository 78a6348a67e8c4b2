"""The project's .deb, built with ``dpkg-buildpackage`` from a copy of the checkout, and cached.

Why a copy: dpkg-buildpackage writes ``debian/ncauth/``, ``.pybuild/`` and the .deb's siblings
into and beside the tree it builds; the checkout must stay clean. The .deb is cached under
/var/cache/ncauth-tests/deb-<key> (key = the sources that go into it), so an unchanged tree is
built once, and builds run under an flock, so parallel sessions wait for one build.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

from .debchroot import CACHE_DIR, ChrootError
from .dovecot_harness import _copy_ignore, _source_key

__all__ = ["BUILD_TOOLS", "build_deb"]

#: what goes into the package besides pyproject.toml and ncauth_checkpassword.py
PACKAGED_DIRS = ("ncauth", "debian", "systemd", "fail2ban", "dovecot-snippets", "sql")
#: the build tools (.ci/apt-packages installs them: dpkg-dev, debhelper, dh-python, ...)
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def build_deb(project_root: Path) -> Path:
    """``ncauth_<version>_all.deb`` built from ``project_root`` (cached per source key).

    The build runs with Debian's own tools and /usr/bin/python3 only (a plain PATH: no pyenv,
    no venv), as on an admin's machine. Raises ChrootError with the log's tail when it fails.
    """
    entry = CACHE_DIR / f"deb-{_source_key(project_root, PACKAGED_DIRS)}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "deb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (entry / "complete").exists():
            shutil.rmtree(entry, ignore_errors=True)
            work = Path(tempfile.mkdtemp(prefix=".deb-build-", dir=CACHE_DIR))
            try:
                src = work / "ncauth"
                shutil.copytree(project_root, src, symlinks=True, ignore=_copy_ignore)
                proc = subprocess.run(
                    ["dpkg-buildpackage", "-us", "-uc", "-b"],
                    cwd=src,
                    env=_ENV,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    stdin=subprocess.DEVNULL,
                )
                if proc.returncode != 0:
                    raise ChrootError(f"dpkg-buildpackage failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
                entry.mkdir()
                for deb in work.glob("*.deb"):
                    shutil.move(deb, entry / deb.name)
                (entry / "build.log").write_text(proc.stdout + proc.stderr)
                (entry / "complete").write_text(f"{project_root}\n")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for old in CACHE_DIR.glob("deb-*"):
                if old != entry:
                    shutil.rmtree(old, ignore_errors=True)
    (deb,) = entry.glob("ncauth_*_all.deb")
    return deb
