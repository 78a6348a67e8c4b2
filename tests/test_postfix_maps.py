"""The daemon's Postfix maps (``[postfix] socket``, socketmap): recipients are the enabled
accounts in served domains, senders map an address to the login names that own it, and a
database outage is TEMP (Postfix: 4xx), never NOTFOUND (5xx, mail bounced for good)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import population
from support.maps import ask, serving_maps

from ncauth import socketmap

D = population.DOMAIN


@pytest.fixture
def maps(standard_nextcloud, tmp_path: Path) -> Iterator[Path]:
    with serving_maps(standard_nextcloud, tmp_path) as (path, _):
        yield path


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
    replies = ask(maps, *(("recipients", k) for k in keys))
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
    replies = ask(maps, ("senders", population.A), ("senders", f"carol@{D}"), ("frob", population.A))
    assert (replies[0].status, replies[0].data) == (socketmap.Status.OK, population.A)
    assert replies[1].status is socketmap.Status.NOTFOUND
    assert replies[2].status is socketmap.Status.PERM


def test_peers_outside_allowed_users_are_refused(standard_nextcloud, tmp_path: Path) -> None:
    here = Path(tempfile.mkdtemp(prefix="ncauth-maps-"))  # a folder user nobody can traverse
    here.chmod(0o755)
    try:
        with serving_maps(standard_nextcloud, here) as (path, log):
            _refused_as_nobody(path)
            assert "refused a Postfix map connection from uid 65534" in log.read_text()
    finally:
        shutil.rmtree(here, ignore_errors=True)


def _refused_as_nobody(path: Path) -> None:
    """A client running as user nobody connects and is hung up on, unanswered."""
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


def test_database_outage_is_temp_never_notfound(tmp_path: Path) -> None:
    class Down:  # a database URL nobody answers
        url = "mysql+pymysql://nobody:x@127.0.0.1:9/nextcloud?connect_timeout=1"
        prefix = "oc_"

        def write_config(self, text: str, name: str) -> Path:
            path = tmp_path / name
            path.write_text(population.config_text(self.url, self.prefix) + text)
            path.chmod(0o600)
            return path

    with serving_maps(Down(), tmp_path) as (path, _):
        replies = ask(path, ("recipients", population.A), ("senders", population.A))
    assert [r.status for r in replies] == [socketmap.Status.TEMP, socketmap.Status.TEMP]
