"""A real ``ncauth serve`` with its Postfix map socket, and a client that asks it as Postfix
does (every query on one connection), for the tests of the socketmap maps."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncauth import socketmap
from support import population
from support.leakcheck import record_output


def ask(path: Path, *queries: tuple[str, str]) -> list[socketmap.Reply]:
    """Send every (map, key) query on one connection and read the replies."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(b"".join(socketmap.encode_request(name, key) for name, key in queries))
        decoder, replies = socketmap.NetstringDecoder(socketmap.MAX_REPLY), []
        while len(replies) < len(queries):
            chunk = s.recv(65536)
            assert chunk, f"closed after {len(replies)} replies"
            replies += [socketmap.parse_reply(frame) for frame in decoder.feed(chunk)]
    return replies


@contextlib.contextmanager
def serving_maps(
    db: Any, directory: Path, text: str = population.STANDARD_CONFIG
) -> Iterator[tuple[Path, Path]]:
    """(map socket, daemon log) of ``ncauth serve`` on *db* (anything with ``write_config``)
    with the config *text* plus ``[daemon]`` and ``[postfix]`` sockets in *directory* (root
    may ask); stopped, and its log leak-checked, on the way out."""
    map_sock = directory / "map.sock"
    config = db.write_config(
        text
        + f'\n[daemon]\nsocket = "{directory / "auth.sock"}"\n\n[postfix]\nsocket = "{map_sock}"\n'
        + 'socket_group = ""\nallowed_users = ["root"]\n',
        name="maps.toml",
    )
    log = directory / "daemon.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ncauth", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not map_sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield map_sock, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        record_output(log.read_text())
