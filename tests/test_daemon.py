"""``ncauth serve`` as a real process on a Unix socket: protocol, verdicts, cache
semantics, concurrency, failures, signals and the checkpassword relay."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import leakcheck, ncschema, population
from support.checkpassword import Result, checkpassword, expected_reply, request
from support.daemon import HELLO, NCAUTH, Daemon, accounts, daemon_config, raw, wait_for
from support.nextcloud import NextcloudDB
from support.population import CASES, A, P
from support.require import unavailable

from ncauth import client, dovecot
from ncauth.errors import TemporaryFailure
from ncauth.protocol import MAX_LINE, decode_line, encode_line

# --- protocol ---------------------------------------------------------------------


def test_handshake_and_answers(sqlite_daemon: Daemon) -> None:
    lines = raw(
        sqlite_daemon.socket,
        HELLO + encode_line("AUTH", "a1", A, P, "service=imap", "rip=198.51.100.1"),
        read_lines=2,
    )
    assert lines[0] == ["VERSION", "1", "0"]
    assert lines[1] == [
        "OK",
        "a1",
        "user=alice@example.org",
        "userdb_uid=vmail",
        "userdb_gid=vmail",
        "userdb_home=/var/vmail/example.org/alice",
    ]


def test_pipelined_requests_answer_in_order(sqlite_daemon: Daemon) -> None:
    data = HELLO + b"".join(
        [
            encode_line("AUTH", "1", A, "wrong-password"),
            encode_line("LOOKUP", "2", "carol@example.org"),
            encode_line("AUTH", "3", "bob@example.org", P),
            encode_line("LOOKUP", "4", "dave@example.org"),
            encode_line("STATS", "5"),
        ]
    )
    lines = raw(sqlite_daemon.socket, data, read_lines=6)
    assert [line[:2] for line in lines[1:]] == [
        ["FAIL", "1"],
        ["UNKNOWN", "2"],
        ["OK", "3"],
        ["OK", "4"],
        ["OK", "5"],
    ]
    assert lines[1][2] == "reason=wrong password"
    assert "uptime" in " ".join(lines[5])


def test_escaped_fields(sqlite_daemon: Daemon, nextcloud_sqlite: NextcloudDB) -> None:
    """A password with TAB, LF and 0x01 travels escaped and verifies byte for byte."""
    weird = "tab\there\nnew\x01line ✓"
    with nextcloud_sqlite.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE oc_users SET password = :h WHERE uid = 'bob'"), {"h": population.php_hash(weird)}
        )
    assert sqlite_daemon.ask("AUTH", "bob@example.org", weird).verdict == "OK"
    assert sqlite_daemon.ask("AUTH", "bob@example.org", weird.replace("\t", " ")).verdict == "FAIL"


@pytest.mark.parametrize(
    ("data", "first"),
    [
        (encode_line("AUTH", "1", A, P), ["TEMPFAIL", "0", "reason=expected a VERSION 1 handshake"]),
        (encode_line("VERSION", "2", "0"), ["TEMPFAIL", "0", "reason=expected a VERSION 1 handshake"]),
        (HELLO + b"A" * (MAX_LINE + 10) + b"\n", ["VERSION", "1", "0"]),
    ],
)
def test_malformed_input_is_answered_and_closed(sqlite_daemon: Daemon, data: bytes, first: list[str]) -> None:
    lines = raw(sqlite_daemon.socket, data, read_lines=3)
    assert lines[0] == first
    if first[0] == "VERSION":
        assert lines[1][0] == "TEMPFAIL" and "longer than" in lines[1][2]
    assert len(lines) <= 2  # and the connection was closed
    assert sqlite_daemon.answers()


@pytest.mark.parametrize(
    "request_line",
    [
        encode_line("AUTH", "7", A),
        encode_line("FROB", "7"),
        encode_line("LOOKUP"),
        b"\xff\xfe\n",
        b"\n",
    ],
)
def test_malformed_requests_get_tempfail(sqlite_daemon: Daemon, request_line: bytes) -> None:
    lines = raw(sqlite_daemon.socket, HELLO + request_line, read_lines=2)
    assert lines[1][0] == "TEMPFAIL"


def test_slow_client_holds_no_worker(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """Silent half-open connections (more than there are workers) do not delay others,
    and are closed after idle_timeout."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "workers = 1\nidle_timeout = 1.5\n")
    d = Daemon(config, sock)
    try:
        silent = []
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(sock))
            s.sendall(HELLO + b"AUTH\t1\talice@exa")  # never finishes the line
            silent.append(s)
        assert d.ask("AUTH", A, P).verdict == "OK"
        for s in silent:
            s.settimeout(5)
            assert s.recv(100).startswith(b"VERSION")  # the handshake answer ...
            assert s.recv(100) == b""  # ... then closed after idle_timeout
            s.close()
    finally:
        assert d.stop() == 0


# --- verdicts -----------------------------------------------------------------------

ANSWER = {"ok": "OK", "refused": "FAIL", "unknown": "UNKNOWN"}


def test_case_table(daemon: Daemon) -> None:
    for case in CASES:
        args = [f"rip={case.remote_ip}"] if case.remote_ip else []
        answer = daemon.ask("AUTH", case.login, case.password, *args)
        assert answer.verdict == ANSWER[case.outcome], case.id
        if case.outcome == "ok":
            assert answer.fields["user"] == case.user, case.id
        else:
            assert case.reason in answer.fields["reason"] or case.id == "other-backend-user", case.id


def test_concurrent_storm_correct_and_bounded(daemon: Daemon) -> None:
    """200 simultaneous logins (64 MiB argon2id, wrong passwords, unknown users): every
    verdict right, no TEMPFAIL, peak RSS within 100 MiB + workers x argon2 memory."""
    jobs = []
    for i in range(200):
        kind = i % 4
        if kind == 0:
            jobs.append((A, P, "OK"))
        elif kind == 1:
            jobs.append((A, f"wrong-{i}", "FAIL"))
        elif kind == 2:
            jobs.append((f"nobody{i}@example.org", f"pw-{i}", "UNKNOWN"))
        else:
            jobs.append(("bob@example.org", P, "OK"))
    with ThreadPoolExecutor(max_workers=50) as pool:
        verdicts = list(pool.map(lambda j: daemon.ask("AUTH", j[0], j[1]).verdict, jobs))
    assert verdicts == [j[2] for j in jobs]
    workers = int(daemon.stats()["workers"])
    assert daemon.rss_peak_kib() <= (100 + workers * 64) * 1024


def test_busy_beyond_the_queue(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """With one worker and no queue, a second simultaneous request is TEMPFAIL busy."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "workers = 1\nqueue = 0\ncache = false\n")
    d = Daemon(config, sock)
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda i: d.ask("AUTH", A, f"wrong-{i}"), range(6)))
        verdicts = sorted(a.verdict for a in answers)
        assert "FAIL" in verdicts and "TEMPFAIL" in verdicts
        assert all("busy" in a.fields["reason"] for a in answers if a.verdict == "TEMPFAIL")
        assert int(d.stats()["busy"]) == verdicts.count("TEMPFAIL")
    finally:
        assert d.stop() == 0


# --- the verified-credentials cache ---------------------------------------------------


def test_cache_hits_and_instant_revocation(daemon: Daemon, db: NextcloudDB) -> None:
    assert daemon.ask("AUTH", A, P).verdict == "OK"
    hits = int(daemon.stats()["cache_hits"])
    assert daemon.ask("AUTH", A, P).verdict == "OK"
    assert int(daemon.stats()["cache_hits"]) == hits + 1

    # password changed in Nextcloud: the old one fails at once, the new one works
    new = "a brand new password 2026"
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE oc_users SET password = :h WHERE uid = 'Alice'"), {"h": population.php_hash(new)}
        )
    assert daemon.ask("AUTH", A, P).verdict == "FAIL"
    assert daemon.ask("AUTH", A, new).verdict == "OK"
    assert daemon.ask("AUTH", A, new).verdict == "OK"

    # disabled in Nextcloud: refused on the very next login, cache or not
    with db.engine.begin() as conn:
        ncschema.disable_user(conn, "oc_", "Alice")
    assert daemon.ask("AUTH", A, new).verdict == "FAIL"
    with db.engine.begin() as conn:
        ncschema.enable_user(conn, "oc_", "Alice")
    assert daemon.ask("AUTH", A, new).verdict == "OK"

    # second factor enabled: the cached login password no longer lets the user in
    with db.engine.begin() as conn:
        ncschema.add_two_factor(conn, "oc_", "Alice", "totp")
    assert daemon.ask("AUTH", A, new).verdict == "FAIL"

    # the password reset above made every app password that stores the old one stale
    assert daemon.ask("AUTH", A, population.token("alice-valid")).verdict == "FAIL"
    # app password revoked: refused at once (one that stores no login password)
    token = population.token("alice-passwordless")
    assert daemon.ask("AUTH", A, token).verdict == "OK"
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM oc_authtoken WHERE token = :t"),
            {"t": ncschema.hash_app_token(token, population.SECRET)},
        )
    assert daemon.ask("AUTH", A, token).verdict == "FAIL"


def test_every_refusal_costs_one_slow_hash_first_time_and_again(daemon: Daemon) -> None:
    """Repeated attempts tell nothing (issue 11.6): a refusal costs one slow hash per
    password form, whether the account exists, is unknown, is disabled, or has a second
    factor, on the first attempt and on every repetition; only a success may come from
    the cache. Counted by the daemon (STATS slow_hashes), not timed."""

    def cost(login: str, password: str, expected: str) -> int:
        before = int(daemon.stats()["slow_hashes"])
        assert daemon.ask("AUTH", login, password).verdict == expected
        return int(daemon.stats()["slow_hashes"]) - before

    # Alice's hash costs what Nextcloud's parameters cost: it is the refusal's cost. dave's
    # and tina's (p=2) cost less: the refusal waits out the decoy time measured for ghost
    # (no second hash); repeated, their right password comes from the cache and the
    # decoy runs instead.
    refusals = [
        (A, "not-it-123", "FAIL", [1, 1, 1]),
        ("ghost@example.org", "not-it-123", "UNKNOWN", [1, 1, 1]),
        (f"dave@{population.DOMAIN}", P, "FAIL", [1, 1, 1]),  # disabled, right password
        # second factor, right password; tina's stored hash is dave's vector, so the
        # match is in the cache already
        (f"tina@{population.DOMAIN}", P, "FAIL", [1, 1, 1]),
        (f"bob@evil.com@{population.DOMAIN}", P, "UNKNOWN", [1, 1, 1]),
    ]  # a name nobody owns
    for login, password, expected, costs in refusals:
        assert [cost(login, password, expected) for _ in range(3)] == costs, login
    assert cost(A, "correct+horse%20battery", "FAIL") == 2  # two forms: as typed, urldecoded
    assert cost("ghost@example.org", "correct+horse%20battery", "UNKNOWN") == 2
    assert cost(A, P, "OK") in (0, 1)
    assert cost(A, P, "OK") == 0  # a repeated success: the cache


def test_cache_can_be_turned_off(db: NextcloudDB, tmp_path: Path) -> None:
    config, sock = daemon_config(db, tmp_path, "cache = false\n")
    d = Daemon(config, sock)
    try:
        for _ in range(3):
            assert d.ask("AUTH", A, P).verdict == "OK"
        stats = d.stats()
        assert (stats["cache_hits"], stats["cache_entries"]) == ("0", "0")
    finally:
        assert d.stop() == 0


# --- failures ---------------------------------------------------------------------------


def test_database_restart_tempfail_then_recovery(mariadb, daemon: Daemon) -> None:
    assert daemon.ask("AUTH", A, P).verdict == "OK"
    mariadb.stop()
    try:
        for password in (P, "wrong"):
            answer = daemon.ask("AUTH", A, password)
            assert answer.verdict == "TEMPFAIL", answer
    finally:
        mariadb.start()
    assert daemon.ask("AUTH", A, P).verdict == "OK"
    assert int(daemon.stats()["db_reconnects"]) >= 1


# --- USERS (doveadm user '*', doveadm -A) ----------------------------------------------

#: runs ncauth.lua's auth_userdb_iterate() outside Dovecot (db-lua.c calls it with no
#: arguments and takes the table's values): the names on stdout, or exit 3 and the error
LUA_ITERATE = r"""
dofile(arg[1])
local ok, names = pcall(auth_userdb_iterate)
if not ok then
  io.stderr:write(tostring(names), "\n")
  os.exit(3)
end
for i = 1, #names do
  io.write(names[i], "\n")
end
"""


def _lua_iterate(socket_path: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    lua = shutil.which("lua5.4")
    if lua is None:
        unavailable("lua5.4 is not installed (Debian packages lua5.4, lua-socket)")
    (directory / "ncauth.lua").write_text(dovecot.lua_script(str(socket_path)))
    (directory / "iterate.lua").write_text(LUA_ITERATE)
    return leakcheck.run([lua, str(directory / "iterate.lua"), str(directory / "ncauth.lua")])


def test_users_streams_every_account(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """Far more names than one line (or one read) holds: one USER line each, then the
    count; the Python client and ncauth.lua read the same list accounts() gives."""
    stored = population.php_hash(P)
    with nextcloud_sqlite.engine.begin() as conn:
        for i in range(3000):
            ncschema.add_user(conn, "oc_", f"bulk.user-{i:05d}", stored)
    config, sock = daemon_config(nextcloud_sqlite, tmp_path)
    expected = accounts(config)
    assert len(expected) > 3000 and sum(len(n) for n in expected) > 4 * MAX_LINE
    d = Daemon(config, sock)
    try:
        lines = raw(
            sock,
            HELLO + encode_line("USERS", "u1") + encode_line("LOOKUP", "l2", A),
            read_lines=3 + len(expected),
        )
        assert lines[1 : 1 + len(expected)] == [["USER", "u1", name] for name in expected]
        assert lines[1 + len(expected)] == ["OK", "u1", f"count={len(expected)}"]
        assert lines[2 + len(expected)][:3] == ["OK", "l2", f"user={A}"]  # the next answer, in order
        assert client.users(str(sock)) == expected
        lua = _lua_iterate(sock, tmp_path)
        assert lua.returncode == 0, lua.stderr
        assert lua.stdout.splitlines() == expected
    finally:
        assert d.stop() == 0
    assert f"{len(expected)} account(s) listed" in d.log()
    lua = _lua_iterate(sock, tmp_path)  # nobody there: an error, never an empty list
    assert lua.returncode == 3 and "ncauth daemon unavailable" in lua.stderr, lua.stderr
    with pytest.raises(client.DaemonUnavailable):
        client.users(str(sock))


def test_users_database_down_is_a_tempfail_alone(mariadb, daemon: Daemon, tmp_path: Path) -> None:
    """No USER line before the TEMPFAIL: nothing a client could take for a short list."""
    expected = accounts(daemon.config)
    assert client.users(str(daemon.socket)) == expected and expected
    mariadb.stop()
    try:
        data = HELLO + encode_line("USERS", "u9") + encode_line("STATS", "s")
        lines = raw(daemon.socket, data, read_lines=3, timeout=30)
        assert [line[:2] for line in lines] == [["VERSION", "1"], ["TEMPFAIL", "u9"], ["OK", "s"]], lines
        assert lines[1][2].startswith("reason=database: "), lines
        with pytest.raises(TemporaryFailure, match="database"):
            client.users(str(daemon.socket))
        lua = _lua_iterate(daemon.socket, tmp_path)
        assert lua.returncode == 3 and "ncauth daemon: temporary failure: database" in lua.stderr, lua.stderr
    finally:
        mariadb.start()
    assert client.users(str(daemon.socket)) == expected


def test_checkpassword_relays_to_the_daemon(sqlite_daemon: Daemon, tmp_path: Path) -> None:
    """With the daemon up, checkpassword imports nothing heavy: a broken SQLAlchemy on its
    path does not matter, and the answers are the daemon's."""
    fake = tmp_path / "fake" / "sqlalchemy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('sqlalchemy must not be imported on the relay path')\n"
    )
    env = {"PYTHONPATH": str(fake.parent), "TCPREMOTEIP": "198.51.100.9"}
    r = checkpassword(sqlite_daemon.config, request(A, P), env)
    assert (r.code, r.reply) == (0, expected_reply(A)), r.stderr
    assert checkpassword(sqlite_daemon.config, request(A, "nope"), env).code == 1
    assert checkpassword(sqlite_daemon.config, request("carol@example.org", "nope"), env).code == 1
    r = checkpassword(sqlite_daemon.config, request(A, ""), {**env, "AUTHORIZED": "1"})
    assert (r.code, r.reply) == (2, expected_reply(A))
    assert (
        checkpassword(sqlite_daemon.config, request("carol@example.org", ""), {**env, "AUTHORIZED": "1"}).code
        == 3
    )
    assert 'rip=198.51.100.9' in sqlite_daemon.log() and "via=daemon" in sqlite_daemon.log()


def test_checkpassword_falls_back_when_the_daemon_dies(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """Daemon killed mid-run: with forward = "auto" no login is refused; with "always"
    checkpassword temp-fails instead of deciding itself."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path)
    d = Daemon(config, sock)
    results: list[Result] = []

    def logins() -> None:
        for _ in range(12):
            results.append(checkpassword(config, request(A, P)))

    t = threading.Thread(target=logins)
    t.start()
    wait_for(lambda: len(results) >= 4)  # the daemon has answered some: killed mid-run
    d.stop(signal.SIGKILL)
    t.join()
    assert [r.code for r in results] == [0] * 12, [r.stderr for r in results]
    assert not any("deciding in-process" in r.stderr for r in results[:4])
    assert "deciding in-process" in results[-1].stderr
    r = checkpassword(config, request(A, P))
    assert r.code == 0 and "deciding in-process" in r.stderr
    always = tmp_path / "always.toml"
    always.write_text(config.read_text().replace("[daemon]\n", '[daemon]\nforward = "always"\n'))
    always.chmod(0o600)
    r = checkpassword(always, request(A, P))
    assert (r.code, r.reply) == (111, b"")


def test_deadline_holds_while_waiting_for_a_silent_daemon(
    nextcloud_sqlite: NextcloudDB, tmp_path: Path
) -> None:
    """A daemon that accepts and never answers, with a reply timeout longer than the
    run's deadline: the deadline ends the run with 111, it is not taken for a daemon
    timeout that falls back to an in-process check without any deadline."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "reply_timeout = 60\n")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(4)
    held: list[socket.socket] = []
    acceptor = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    acceptor.start()
    try:
        r = checkpassword(config, request(A, P), alarm_after=1.5)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert (r.code, r.reply) == (111, b""), r.stderr
    assert "no verdict within" in r.stderr and r.seconds < 10


# --- process behaviour ------------------------------------------------------------------


def test_sigterm_drains_inflight_requests(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "cache = false\n")
    d = Daemon(config, sock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(d.ask, "AUTH", A, P) for _ in range(4)]
        wait_for(lambda: _reached(d) >= 4)  # all four are in the daemon (in flight or answered)
        d.proc.send_signal(signal.SIGTERM)
        assert [f.result().verdict for f in futures] == ["OK"] * 4
    assert d.stop() == 0
    draining = re.search(r"stopping: draining (\d+) request", d.log())
    assert draining and int(draining[1]) >= 1, d.log()  # the drain had work to do
    assert "stopped" in d.log()


def _reached(d: Daemon) -> int:
    """Requests the daemon has taken in: answered, or in flight (STATS is neither)."""
    stats = d.stats()
    return int(stats["requests"]) + int(stats["inflight"])


def test_drain_closes_kept_open_connections(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """During the drain the request in flight is answered, but a kept-open connection
    (a Lua auth-worker's) gets no new work: it is closed, and the client retries on a
    fresh connection to the next daemon."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "cache = false\n")
    d = Daemon(config, sock)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(sock))
        s.sendall(HELLO + encode_line("AUTH", "1", A, P))
        wait_for(lambda: d.stats()["inflight"] == "1")  # AUTH 1 is being decided
        d.proc.send_signal(signal.SIGTERM)
        d.wait_for_log("stopping: draining")
        s.sendall(encode_line("AUTH", "2", A, P))
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    answers = [decode_line(line)[:2] for line in buf.split(b"\n")[:-1]]
    assert answers == [["VERSION", "1"], ["OK", "1"]]
    assert d.stop() == 0


def test_sighup_under_load_loses_no_login(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """Reloads while logins are in flight: every answer is right, and each replaced
    configuration's database pool is closed once its last request is done."""
    config, sock = daemon_config(nextcloud_sqlite, tmp_path, "cache = false\n")
    d = Daemon(config, sock)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(d.ask, "AUTH", A, P if i % 2 else "wrong") for i in range(24)]
            wait_for(lambda: d.stats()["inflight"] != "0")  # the load is on
            for reloads in range(1, 6):
                d.proc.send_signal(signal.SIGHUP)
                d.wait_for_log("configuration reloaded", count=reloads)
            verdicts = [f.result().verdict for f in futures]
        assert verdicts == ["FAIL", "OK"] * 12
        assert d.log().count("configuration reloaded") == 5
        assert d.ask("AUTH", A, P).verdict == "OK"
    finally:
        assert d.stop() == 0


def test_sighup_reloads_and_keeps_a_broken_config_out(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    config, sock = daemon_config(nextcloud_sqlite, tmp_path)
    d = Daemon(config, sock)
    try:
        assert d.ask("AUTH", "alice@other.tld", P).verdict == "UNKNOWN"
        config.write_text(
            config.read_text().replace('domains = ["example.org"]', 'domains = ["example.org", "other.tld"]')
        )
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("configuration reloaded")
        assert d.ask("AUTH", "alice@other.tld", P).verdict == "OK"
        config.write_text(config.read_text() + "\nbogus_key = 1\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("reload failed, keeping the running configuration")
        assert d.ask("AUTH", "alice@other.tld", P).verdict == "OK"
    finally:
        assert d.stop() == 0


def test_socket_mode_and_peer_allow_list(nextcloud_sqlite: NextcloudDB) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ncauth-sock-"))  # reachable for user nobody
    directory.chmod(0o755)
    config, sock = daemon_config(nextcloud_sqlite, directory, 'allowed_users = ["root"]\n')
    d = Daemon(config, sock)
    try:
        assert oct(sock.stat().st_mode & 0o777) == "0o660"
        sock.chmod(0o666)  # let nobody reach the socket, to prove the SO_PEERCRED check
        # The daemon closes at once: the client's write may fail (EPIPE), or its read
        # (ECONNRESET, unread data was dropped) or see EOF; each means "closed, unanswered".
        probe = (
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n"
            "    s.sendall(b'VERSION\\t1\\t0\\nSTATS\\t1\\n'); print(repr(s.recv(100)))\n"
            "except (BrokenPipeError, ConnectionResetError): print(repr(b''))"
        )
        out = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                probe,
                str(sock),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == "b''", out
        assert "refused a connection from uid 65534" in d.log()
        assert d.stats()["refused_peers"] == "1"
    finally:
        assert d.stop() == 0
        shutil.rmtree(directory)


def test_systemd_socket_activation(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    config, sock = daemon_config(nextcloud_sqlite, tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(16)
    os.set_inheritable(listener.fileno(), True)
    # As systemd does: the socket on fd 3, LISTEN_PID = the daemon's own pid (exec keeps it).
    wrapper = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid());"
        "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.argv[2], sys.argv[2:])"
    )
    d = Daemon(
        config,
        sock,
        argv=[
            sys.executable,
            "-c",
            wrapper,
            str(listener.fileno()),
            str(NCAUTH),
            "serve",
            "--config",
            str(config),
        ],
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    try:
        assert d.ask("AUTH", A, P).verdict == "OK"
        assert "listening on the socket systemd passed" in d.log()
    finally:
        assert d.stop() == 0


def test_no_fd_leak(sqlite_daemon: Daemon) -> None:
    """10 000 requests, each on its own connection, some malformed: no descriptor stays."""

    sqlite_daemon.ask("AUTH", A, P)
    before = sqlite_daemon.open_fds()
    for i in range(10_000):
        if i % 100 == 99:
            raw(sqlite_daemon.socket, b"garbage\n", read_lines=1)
        elif i % 2:
            sqlite_daemon.ask("LOOKUP", A)
        else:
            sqlite_daemon.ask("AUTH", A, P)
    after = sqlite_daemon.open_fds()
    print(f"fd leak check: 10000 requests, descriptors before={before} after={after}")
    assert after <= before + 2


def test_no_secret_in_the_process_list(sqlite_daemon: Daemon, nextcloud_sqlite: NextcloudDB) -> None:
    """The daemon's command line names the config file, never what is in it."""
    cmdline = Path(f"/proc/{sqlite_daemon.proc.pid}/cmdline").read_bytes().decode()
    assert "--config" in cmdline
    assert population.SECRET not in cmdline and nextcloud_sqlite.url not in cmdline


# --- brute force ------------------------------------------------------------------------


def test_throttling_stops_spraying_and_spares_the_owner(
    nextcloud_sqlite: NextcloudDB, tmp_path: Path
) -> None:
    """A spraying IP is throttled after its failures, without a worker; a distributed guess
    at one account throttles that account, except from where its owner logged in before;
    other users and other IPs go on; only throttle_exempt_networks skip the per-IP budget
    (trusted_networks, the two-factor exemption, do not)."""
    config, sock = daemon_config(
        nextcloud_sqlite,
        tmp_path,
        "throttle_ip_failures = 5\nthrottle_user_failures = 4\n"
        "throttle_exempt_networks = ['198.51.100.64/26']\n",
    )
    d = Daemon(config, sock)
    try:
        sprayer = "rip=203.0.113.66"
        for i in range(5):
            assert d.ask("AUTH", f"user{i}@example.org", "Summer2026!", sprayer).verdict == "UNKNOWN"
        answer = d.ask("AUTH", "bob@example.org", P, sprayer)  # even the right password: the IP is throttled
        assert answer.verdict == "TEMPFAIL" and "throttled" in answer.fields["reason"]
        assert d.ask("AUTH", "bob@example.org", P, "rip=198.51.100.20").verdict == "OK"

        # Alice logged in from her home IP; then many IPs guess her password
        assert d.ask("AUTH", A, P, "rip=198.51.100.5").verdict == "OK"
        for i in range(4):
            assert d.ask("AUTH", A, f"guess-{i}", f"rip=203.0.113.{i}").verdict == "FAIL"
        answer = d.ask("AUTH", A, P, "rip=203.0.113.99")
        assert answer.verdict == "TEMPFAIL" and "for this user" in answer.fields["reason"]
        assert d.ask("AUTH", A, P, "rip=198.51.100.5").verdict == "OK"  # her known address
        assert d.ask("AUTH", "bob@example.org", P, "rip=203.0.113.99").verdict == "OK"

        # a host in trusted_networks relays any credentials: it keeps its per-IP budget ...
        for i in range(5):
            d.ask("AUTH", f"typo{i}@example.org", "x" * 8, "rip=192.0.2.10")
        assert d.ask("AUTH", "bob@example.org", P, "rip=192.0.2.10").verdict == "TEMPFAIL"
        # ... unless the admin exempts it explicitly, which spares the per-IP budget only
        for i in range(8):
            d.ask("AUTH", f"typo{i}@example.org", "x" * 8, "rip=198.51.100.77")
        assert d.ask("AUTH", "bob@example.org", P, "rip=198.51.100.77").verdict == "OK"
        assert d.ask("AUTH", A, P, "rip=198.51.100.77").verdict == "TEMPFAIL"  # Alice's budget is spent
        assert int(d.stats()["throttled"]) == 4
        assert 'reason="throttled: too many failed logins from 203.0.113.66"' in d.log()
    finally:
        assert d.stop() == 0


def test_throttle_counts_accounts_networks_and_bursts(nextcloud_sqlite: NextcloudDB, tmp_path: Path) -> None:
    """Issue 11.7, through the socket: every spelling of one account shares its budget,
    IPv6 addresses of one /64 share one, a parallel burst gets no more than the budget,
    and SIGHUP keeps every counter."""
    config, sock = daemon_config(
        nextcloud_sqlite, tmp_path, "throttle_ip_failures = 6\nthrottle_user_failures = 3\n"
    )
    d = Daemon(config, sock)
    try:
        spellings = [A, A.upper(), "Alice@EXAMPLE.org", "aLiCe@example.org", "alice@example.org"]
        verdicts = [
            d.ask("AUTH", login, "wrong-guess", f"rip=198.51.100.{i}").verdict
            for i, login in enumerate(spellings)
        ]
        assert verdicts == ["FAIL"] * 3 + ["TEMPFAIL"] * 2

        v6 = [
            d.ask("AUTH", f"nobody{i}@example.org", "wrong-guess", f"rip=2001:db8:1:2::{i:x}").verdict
            for i in range(1, 9)
        ]
        assert v6 == ["UNKNOWN"] * 6 + ["TEMPFAIL"] * 2
        assert d.ask("AUTH", "bob@example.org", P, "rip=2001:db8:1:3::1").verdict == "OK"  # another /64

        # a burst of 20 parallel guesses from one address, one account each: 6 are decided
        def guess(i: int) -> str:
            return d.ask("AUTH", f"burst{i}@example.org", "wrong-guess", "rip=203.0.113.50").verdict

        with ThreadPoolExecutor(20) as pool:
            burst = list(pool.map(guess, range(20)))
        assert burst.count("UNKNOWN") == 6 and burst.count("TEMPFAIL") == 14

        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log())
        assert d.ask("AUTH", A, P, "rip=198.51.100.200").verdict == "TEMPFAIL"  # still throttled
        assert d.ask("AUTH", "x@example.org", "w", "rip=2001:db8:1:2::ff").verdict == "TEMPFAIL"
    finally:
        assert d.stop() == 0
