"""The installed ``ncauth-checkpassword`` as Dovecot 2.3 runs it: the request on fd 3,
the reply helper's input on fd 4, no PATH (Dovecot's src/auth/db-checkpassword.c and checkpassword-reply.c)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .leakcheck import record_output

PROGRAM = Path(sys.executable).parent / "ncauth-checkpassword"
REPLY_HELPER = "/usr/lib/dovecot/checkpassword-reply"
DOVECOT_ENV = {"PROTO": "TCP", "SERVICE": "imap", "ORIG_UID": str(os.getuid()), "TCPLOCALIP": "127.0.0.1"}


@dataclass
class Result:
    code: int
    reply: bytes
    stderr: str
    seconds: float


def checkpassword(
    config: Path | str,
    data: bytes,
    env: dict[str, str] | None = None,
    *,
    keep_open: bool = False,
    address_space: int | None = None,
    argv: list[str] | None = None,
    program: Path = PROGRAM,
    alarm_after: float | None = None,
) -> Result:
    """Run the program with *data* on fd 3 and collect fd 4, exit status and stderr.
    ``keep_open`` keeps fd 3's write end open, as a sibling child of Dovecot would;
    ``alarm_after`` sends SIGALRM then, as the program's own deadline alarm would."""
    if not program.exists():
        pytest.fail(f"{program} is not installed: pip install -e '.[test]'")
    r3, w3 = os.pipe()
    r4, w4 = os.pipe()
    os.write(w3, data)
    if not keep_open:
        os.close(w3)

    def child() -> None:
        os.dup2(r3, 3)
        os.dup2(w4, 4)
        os.set_inheritable(3, True)
        os.set_inheritable(4, True)
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    started = time.monotonic()
    args = argv or [str(program), "--config", str(config), REPLY_HELPER]
    proc = subprocess.Popen(
        args,
        env={**DOVECOT_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=child,
        close_fds=False,
    )
    os.close(r3)
    os.close(w4)
    if alarm_after is not None:
        threading.Timer(alarm_after, lambda: proc.poll() is None and proc.send_signal(signal.SIGALRM)).start()
    reply = b""
    while chunk := os.read(r4, 65536):
        reply += chunk
    os.close(r4)
    _, err = proc.communicate(timeout=60)
    if keep_open:
        os.close(w3)
    record_output(reply.decode(errors="replace"), err.decode(errors="replace"))
    return Result(proc.returncode, reply, err.decode(errors="replace"), time.monotonic() - started)


def request(user: str | bytes, password: str | bytes) -> bytes:
    """What Dovecot writes to fd 3: user, password and an empty timestamp, each NUL-ended."""
    u = user.encode() if isinstance(user, str) else user
    p = password.encode() if isinstance(password, str) else password
    return u + b"\0" + p + b"\0\0"


def expected_reply(user: str) -> bytes:
    """What the reply helper gets for *user* under the standard config's [userdb]."""
    local, _, domain = user.partition("@")
    return (
        f"user={user}\tuserdb_uid=vmail\tuserdb_gid=vmail\tuserdb_home=/var/vmail/{domain}/{local}".encode()
    )
