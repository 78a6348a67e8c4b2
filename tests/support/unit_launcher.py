"""Start ncauth's daemon the way systemd would from the installed ncauth.socket and ncauth.service.

Chroots have no systemd, so this does its part for the test: it reads the two unit files the
package installed, opens the socket at ``ListenStream=`` with ``SocketUser=``/``SocketGroup=``/
``SocketMode=`` (parent made with ``DirectoryMode=``), takes the service's ``User=``,
``Group=``, ``SupplementaryGroups=`` and ``UMask=``, and execs ``ExecStart=`` with the socket as
fd 3 (``LISTEN_FDS=1``, ``LISTEN_PID``): a wrong path or user in a unit fails here as it would
under systemd. Runs under the chroot's /usr/bin/python3, so stdlib only.

    python3 unit_launcher.py /lib/systemd/system
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import socket
import sys
from pathlib import Path


def read_unit(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (every section; a key given twice keeps both)."""
    keys: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and line[0] not in "#;[" and "=" in line:
            key, value = line.split("=", 1)
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def main(unit_dir: str) -> None:
    sock_unit = read_unit(Path(unit_dir, "ncauth.socket"))
    service = read_unit(Path(unit_dir, "ncauth.service"))
    path = Path(sock_unit["ListenStream"][0])
    path.parent.mkdir(mode=int(sock_unit.get("DirectoryMode", ["0755"])[0], 8), parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chown(
        path,
        pwd.getpwnam(sock_unit.get("SocketUser", ["root"])[0]).pw_uid,
        grp.getgrnam(sock_unit.get("SocketGroup", ["root"])[0]).gr_gid,
    )
    os.chmod(path, int(sock_unit.get("SocketMode", ["0666"])[0], 8))
    listener.listen(128)
    if listener.fileno() != 3:
        os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)  # the socket may be fd 3 already, close-on-exec as Python opens it
    user = pwd.getpwnam(service["User"][0])
    group = grp.getgrnam(service.get("Group", [user.pw_name])[0])
    extra = [grp.getgrnam(g).gr_gid for v in service.get("SupplementaryGroups", []) for g in v.split()]
    os.setgroups(extra)
    os.setgid(group.gr_gid)
    os.setuid(user.pw_uid)
    os.umask(int(service.get("UMask", ["0022"])[0], 8))
    argv = shlex.split(service["ExecStart"][0])
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    os.execve(argv[0], argv, env)  # noqa: S606 - the unit's ExecStart=, run as systemd runs it


if __name__ == "__main__":
    main(sys.argv[1])
