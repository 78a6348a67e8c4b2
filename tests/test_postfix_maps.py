"""The daemon's Postfix maps (``[postfix] socket``, socketmap): recipients are the enabled
accounts in served domains, senders map an address to the login names that own it, and a
database outage is TEMP (Postfix: 4xx), never NOTFOUND (5xx, mail bounced for good)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from support import population
from support.leakcheck import record_output

from ncauth import socketmap

D = population.DOMAIN


def _ask(path: Path, *queries: tuple[str, str]) -> list[socketmap.Reply]:
    """Send every query on one connection, as Postfix does, and read the replies."""
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


def _serve(db, tmp_path: Path, extra: str = ""):
    auth_sock, map_sock = tmp_path / "auth.sock", tmp_path / "map.sock"
    config = db.write_config(
        population.STANDARD_CONFIG
        + f'\n[daemon]\nsocket = "{auth_sock}"\n\n[postfix]\nsocket = "{map_sock}"\nsocket_group = ""\n'
        + 'allowed_users = ["root"]\n'
        + extra,
        name="maps.toml",
    )
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncauth", "serve", "--config", str(config)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not map_sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc, map_sock, log


@pytest.fixture
def maps(standard_nextcloud, tmp_path: Path):
    proc, path, log = _serve(standard_nextcloud, tmp_path)
    yield path
    proc.terminate()
    proc.wait(timeout=30)
    record_output(log.read_text())


def test_recipients_are_the_enabled_accounts(maps: Path) -> None:
    keys = [
        population.A,
        f"ALICE@{D}",
        f"dave@{D}",
        f"carol@{D}",
        "alice@other.tld",
        f"@{D}",
        f"bob@evil.com@{D}",
    ]
    replies = _ask(maps, *(("recipients", k) for k in keys))
    assert [(r.status, r.data) for r in replies] == [
        (socketmap.Status.OK, population.A),
        (socketmap.Status.OK, population.A),
        (socketmap.Status.NOTFOUND, ""),  # dave is disabled
        (socketmap.Status.NOTFOUND, ""),  # no such user
        (socketmap.Status.NOTFOUND, ""),  # domain not served
        (socketmap.Status.NOTFOUND, ""),  # Postfix's catch-all probe
        (socketmap.Status.NOTFOUND, ""),  # two '@'
    ]


def test_senders_name_the_owners_login(maps: Path) -> None:
    replies = _ask(maps, ("senders", population.A), ("senders", f"carol@{D}"), ("frob", population.A))
    assert (replies[0].status, replies[0].data) == (socketmap.Status.OK, population.A)
    assert replies[1].status is socketmap.Status.NOTFOUND
    assert replies[2].status is socketmap.Status.PERM


def test_peers_outside_allowed_users_are_refused(standard_nextcloud, tmp_path: Path) -> None:
    here = Path(tempfile.mkdtemp(prefix="ncauth-maps-"))  # a folder user nobody can traverse
    here.chmod(0o755)
    proc, path, log = _serve(standard_nextcloud, here)
    try:
        os.chmod(path, 0o666)  # noqa: S103 - only SO_PEERCRED stands between nobody and the maps
        pid = os.fork()
        if pid == 0:  # as nobody: connect and expect the daemon to hang up
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(10)
                    s.connect(str(path))
                    try:
                        s.sendall(socketmap.encode_request("recipients", population.A))
                        answer = s.recv(100)
                    except (BrokenPipeError, ConnectionResetError):
                        answer = b""
                    os._exit(0 if answer == b"" else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert "refused a Postfix map connection from uid 65534" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        record_output(log.read_text())
        shutil.rmtree(here, ignore_errors=True)


def test_database_outage_is_temp_never_notfound(tmp_path: Path) -> None:
    class Down:  # a database URL nobody answers
        url = "mysql+pymysql://nobody:x@127.0.0.1:9/nextcloud?connect_timeout=1"
        prefix = "oc_"

        def write_config(self, text: str, name: str) -> Path:
            path = tmp_path / name
            path.write_text(population.config_text(self.url, self.prefix) + text)
            path.chmod(0o600)
            return path

    proc, path, log = _serve(Down(), tmp_path)
    try:
        replies = _ask(path, ("recipients", population.A), ("senders", population.A))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        record_output(log.read_text())
    assert [r.status for r in replies] == [socketmap.Status.TEMP, socketmap.Status.TEMP]
