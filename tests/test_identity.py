"""Identity safety (issue 11): the mailbox a login reaches belongs to the Nextcloud account
whose password was checked, whatever users put in their profiles and whatever rows the
database holds. Each test names the finding it pins; each fails on the code before the fix."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ncschema, population
from support.checkpassword import DOVECOT_ENV, REPLY_HELPER, checkpassword, expected_reply, request
from support.daemon import NCAUTH, Daemon, daemon_config, wait_for
from support.nextcloud import NextcloudDB, database_url
from support.population import P

from ncauth import config as config_mod
from ncauth import hashes
from ncauth.policy import Authenticator, Outcome

HOSTILE_P = "eve's own password 1234"
D = population.DOMAIN


def _config(db: NextcloudDB, accounts: str, extra: str = "", name: str = "ncauth.toml") -> config_mod.Config:
    path = db.directory / name
    path.write_text(
        population.config_text(db.url, db.prefix) + f"\n[accounts]\n{accounts}\n"
        '[userdb]\nhome = "/var/vmail/{domain}/{local}"\nuidfield = "{uid}"\n' + extra
    )
    path.chmod(0o600)
    return config_mod.load(str(path))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[NextcloudDB]:
    db = NextcloudDB(f"sqlite:///{tmp_path / 'nextcloud.db'}", "oc_", tmp_path)
    yield db
    db.close()


def _users(db: NextcloudDB, *users: tuple[str, str]) -> None:
    with db.engine.begin() as conn:
        for uid, password in users:
            ncschema.add_user(conn, "oc_", uid, population.php_hash(password))


def _email(db: NextcloudDB, uid: str, value: str, *, raw: bool = False) -> None:
    with db.engine.begin() as conn:
        if raw:  # exactly as given (no lower-casing): a row an older version or a script wrote
            ncschema.set_preference(conn, "oc_", uid, "settings", "email", value)
        else:
            ncschema.set_email(conn, "oc_", uid, value)


def _decide(config: config_mod.Config, login: str, password: str | None):
    auth = Authenticator(config)
    try:
        return auth.lookup(login) if password is None else auth.authenticate(login, password.encode())
    finally:
        auth.store.close()


# --- 1. match = "email" -----------------------------------------------------------------


def _config_php(db: NextcloudDB, settings: str) -> Path:
    path = db.directory / "config.php"
    path.write_text(
        f"<?php\n$CONFIG = array (\n  'secret' => '{population.SECRET}',\n"
        f"  'passwordsalt' => '{population.PASSWORD_SALT}',\n{settings}\n);\n"
    )
    return path


@pytest.mark.parametrize(
    ("settings", "accepted"),
    [
        ("", False),  # Nextcloud's default: users edit it
        ("  'allow_user_to_change_display_name' => 'false',", False),  # a string locks nothing
        ("  'allow_user_to_change_display_name' => false,", True),  # before Nextcloud 32
        ("  'allow_user_to_change_email' => false,", True),  # Nextcloud 32
        ("  'allow_user_to_change_display_name' => false,\n  'allow_user_to_change_email' => true,", False),
    ],
)
def test_email_match_needs_addresses_users_cannot_set(db: NextcloudDB, settings: str, accepted: bool) -> None:
    """Finding 1: by default Nextcloud users set their own e-mail address, so match =
    "email" is refused unless Nextcloud's config.php locks it (or the admin trusts them)."""
    php = _config_php(db, settings)
    accounts = f'domains = ["{D}"]\nmatch = "email"'
    text = (
        f'[nextcloud]\ndatabase_url = "{db.url}"\nconfig_php = "{php}"\n'
        f"hashing_memory_cost = 8192\nhashing_time_cost = 1\n[accounts]\n{accounts}\n"
    )
    path = db.directory / "email.toml"
    path.write_text(text)
    path.chmod(0o600)
    if accepted:
        assert config_mod.load(str(path)).accounts.match == "email"
    else:
        with pytest.raises(config_mod.ConfigError, match="may change their own address|cannot tell"):
            config_mod.load(str(path))
    path.write_text(text.replace("match = \"email\"", "match = \"email\"\ntrust_user_emails = true"))
    assert config_mod.load(str(path)).accounts.trust_user_emails


def test_an_address_a_user_copied_reaches_nobody(db: NextcloudDB) -> None:
    """Finding 1: Eve sets her address to the boss's. Neither login by that address
    reaches a mailbox (Nextcloud logs in by e-mail only when it is unique), and Eve's
    own password never gives her the boss's mailbox name."""
    _users(db, ("boss", P), ("eve", HOSTILE_P))
    _email(db, "boss", f"boss@{D}")
    _email(db, "eve", f"Boss@{D}")
    config = _config(db, f'domains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true')
    for password in (P, HOSTILE_P):
        verdict = _decide(config, f"boss@{D}", password)
        assert verdict.outcome is Outcome.UNKNOWN and "several users" in verdict.reason
    assert _decide(config, f"boss@{D}", None).outcome is Outcome.UNKNOWN


def test_email_login_reaches_the_mailbox_named_by_the_account(db: NextcloudDB) -> None:
    """Finding 1, both directions: the canonical name is the account's uid_lower at the
    address's domain, so when an address moves from one account to another, the login
    follows the account, and no account ever gets a mailbox named by an address."""
    _users(db, ("Anna", P), ("bert", HOSTILE_P))
    _email(db, "Anna", f"boss@{D}")
    config = _config(db, f'domains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true')
    verdict = _decide(config, f"BOSS@{D}", P)
    assert verdict.ok and verdict.user == f"anna@{D}" and verdict.uid == "Anna"
    assert verdict.fields["home"] == f"/var/vmail/{D}/anna"
    with db.engine.begin() as conn:  # the admin gives the address to bert
        conn.execute(sa.text("DELETE FROM oc_preferences WHERE userid = 'Anna' AND configkey = 'email'"))
    _email(db, "bert", f"boss@{D}")
    assert _decide(config, f"boss@{D}", P).outcome is Outcome.REFUSED  # Anna's password: no
    verdict = _decide(config, f"boss@{D}", HOSTILE_P)
    assert verdict.ok and verdict.user == f"bert@{D}"  # bert's own mailbox
    assert _decide(config, f"anna@{D}", P).outcome is Outcome.UNKNOWN  # not an address


@pytest.mark.parametrize("uid", ["x@other.tld", "../../etc", "a/b", "..", "tab\there", "nul\x00byte"])
def test_email_owner_whose_uid_cannot_name_a_mailbox_is_nobody(db: NextcloudDB, uid: str) -> None:
    """Findings 1 and 12: under match = "email" the uid comes from the database; one
    that cannot be a mailbox local part ('@', '/', '..', control characters) is refused
    before any password check, never rendered into a path or a reply."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO oc_users (uid, uid_lower, password) VALUES (:u, :l, :p)"),
            {"u": uid, "l": uid.lower(), "p": population.php_hash(P)},
        )
    _email(db, uid, f"odd@{D}", raw=True)
    config = _config(db, f'domains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true')
    for password in (P, None):
        verdict = _decide(config, f"odd@{D}", password)
        assert verdict.outcome is Outcome.UNKNOWN and "cannot" in verdict.reason, verdict


def test_owner_is_read_by_uid_not_by_a_python_lowering(db: NextcloudDB) -> None:
    """Finding 5: PHP before 8.3 lower-cases a final capital sigma to 'σ', Python to 'ς'.
    The e-mail's owner is read by its exact uid and keeps its stored uid_lower; the
    other account, whose uid_lower is Python's lowering, is never reached."""
    with db.engine.begin() as conn:
        for uid, uid_lower, password in (("ΟΔΟΣ", "οδοσ", P), ("οδος", "οδος", HOSTILE_P)):
            conn.execute(
                sa.text("INSERT INTO oc_users (uid, uid_lower, password) VALUES (:u, :l, :p)"),
                {"u": uid, "l": uid_lower, "p": population.php_hash(password)},
            )
    _email(db, "ΟΔΟΣ", f"odos@{D}")
    config = _config(db, f'domains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true')
    verdict = _decide(config, f"odos@{D}", P)
    assert verdict.ok and verdict.uid == "ΟΔΟΣ" and verdict.user == f"οδοσ@{D}"
    assert _decide(config, f"odos@{D}", HOSTILE_P).outcome is Outcome.REFUSED


@pytest.fixture(scope="module")
def mariadb_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NextcloudDB]:
    tmp = tmp_path_factory.mktemp("identity-mariadb")
    db = NextcloudDB(database_url("mariadb", request, tmp), "oc_", tmp)
    yield db
    db.close()


def test_padded_near_duplicates_cannot_hide_a_second_owner(mariadb_db: NextcloudDB) -> None:
    """Finding 5 on MariaDB, whose collations ignore trailing spaces: many padded copies
    of an address (each a different user) come back from the database with the real
    owners; every candidate is compared exactly, so two exact owners are still two."""
    db = mariadb_db
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM oc_preferences"))
        conn.execute(sa.text("DELETE FROM oc_users"))
    padded = [(f"pad{i}", HOSTILE_P) for i in range(8)]
    _users(db, ("owner1", P), ("owner2", P), *padded)
    for i, (uid, _) in enumerate(padded):
        _email(db, uid, f"shared@{D}" + " " * (i + 1), raw=True)
    _email(db, "owner1", f"shared@{D}")
    _email(db, "owner2", f"shared@{D}")
    config = _config(db, f'domains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true')
    assert "several users" in _decide(config, f"shared@{D}", P).reason
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM oc_preferences WHERE userid = 'owner1'"))
    verdict = _decide(config, f"shared@{D}", P)
    assert verdict.ok and verdict.uid == "owner2"
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM oc_preferences WHERE userid = 'owner2'"))
    assert _decide(config, f"shared@{D}", P).outcome is Outcome.UNKNOWN  # only padded copies: nobody


def test_legacy_utf8mb3_table_makes_a_4_byte_login_unknown_not_an_outage(mariadb_db: NextcloudDB) -> None:
    """Finding 13: on a utf8mb3 Nextcloud database a login with a 4-byte character
    cannot be compared at all (error 1267). That is an unknown user, with the decoy
    work spent, and the database stays in service."""
    db = mariadb_db
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("ALTER TABLE oc_users CONVERT TO CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci")
        )
    try:
        _users(db, ("plain", P))
        config = _config(db, f'domains = ["{D}"]')
        auth = Authenticator(config)
        try:
            before = hashes.slow_hashes.value
            verdict = auth.authenticate(f"p\U0001f511@{D}", P.encode())
            assert verdict.outcome is Outcome.UNKNOWN and verdict.reason == "no such Nextcloud user"
            assert hashes.slow_hashes.value == before + 1  # the decoy ran
            assert auth.store.reconnects == 0  # not marked dead
            assert auth.authenticate(f"plain@{D}", P.encode()).ok
        finally:
            auth.store.close()
    finally:
        with db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE oc_users CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))


# --- 2. uids with '@' and match = "address" -----------------------------------------------


def test_address_match_names_the_mailbox_by_the_whole_uid(db: NextcloudDB) -> None:
    """Finding 2: with match = "address" the whole uid is the name, and it has one '@'."""
    _users(db, ("bob@evil.com", P), ("bob", HOSTILE_P))
    config = _config(db, 'domains = ["*"]\nmatch = "address"')
    verdict = _decide(config, "Bob@Evil.com", P)
    assert (
        verdict.ok and verdict.user == "bob@evil.com" and verdict.fields["home"] == "/var/vmail/evil.com/bob"
    )
    for login in ("bob@evil.com@example.org", "bob@evil.com@", "bob@@evil.com"):
        assert _decide(config, login, P).outcome is Outcome.UNKNOWN
    local = _config(db, f'domains = ["{D}", "evil.com"]', name="local.toml")
    assert _decide(local, f"bob@evil.com@{D}", P).outcome is Outcome.UNKNOWN
    assert _decide(local, f"bob@evil.com@{D}", HOSTILE_P).outcome is Outcome.UNKNOWN


def test_a_uid_column_that_cannot_be_carried_is_nobody(db: NextcloudDB) -> None:
    """Finding 12: a row whose uid (rendered by a {uid} placeholder) holds a NUL or a
    control character is refused by name, never turned into a reply Dovecot rejects."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO oc_users (uid, uid_lower, password) VALUES (:u, 'carl', :p)"),
            {"u": "carl\x00", "p": population.php_hash(P)},
        )
    config = _config(db, f'domains = ["{D}"]')
    verdict = _decide(config, f"carl@{D}", P)
    assert verdict.outcome is Outcome.UNKNOWN and "cannot be used in mail paths" in verdict.reason


# --- 11. hostile hash rows, through checkpassword ------------------------------------------

HOSTILE_HASHES = {
    "t=20000000": "3|$argon2id$v=19$m=65536,t=20000000,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
    "m=1GiB": "3|$argon2id$v=19$m=1048576,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43,
    "bcrypt-31": "1|$2y$31$" + "a" * 53,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HASHES))
def test_hostile_hash_rows_are_refused_at_once(db: NextcloudDB, name: str) -> None:
    """Finding 11: a stored hash asking for hours of work or gigabytes is refused in
    well under a second by checkpassword, with the reason logged; its memory stays
    that of an ordinary login."""
    with db.engine.begin() as conn:
        ncschema.add_user(conn, "oc_", "mallory", HOSTILE_HASHES[name])
    config = db.write_config(f'\n[accounts]\ndomains = ["{D}"]\n')
    before = _children_maxrss()
    r = checkpassword(config, request(f"mallory@{D}", P))
    assert r.code == 1 and "above [nextcloud] max_" in r.stderr
    assert r.seconds < 5
    assert _children_maxrss() - before < 200 * 1024  # KiB: the 1 GiB row is never allocated


def _children_maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def test_the_deadline_holds_while_argon2_runs(db: NextcloudDB) -> None:
    """Finding 11: within the limits the admin raised, a slow hash is cut off at the
    deadline (exit 111), even though SIGALRM cannot interrupt argon2 itself."""
    slow = "3|$argon2id$v=19$m=16384,t=10000,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
    with db.engine.begin() as conn:
        ncschema.add_user(conn, "oc_", "slowpoke", slow)
    config = db.write_config(f'max_argon2_time_cost = 10000\n\n[accounts]\ndomains = ["{D}"]\n')
    code = (
        "import sys; import ncauth.checkpassword as c; c.DEADLINE = 2; "
        "c.main(['--config', sys.argv[1], sys.argv[2]])"
    )
    r = checkpassword(
        config,
        request(f"slowpoke@{D}", P),
        env={**os.environ, **DOVECOT_ENV},
        argv=[sys.executable, "-c", code, str(config), REPLY_HELPER],
    )
    assert r.code == 111, r.stderr
    assert "no verdict within" in r.stderr
    assert r.seconds < 10  # the hash alone would run for minutes


# --- 12/13. the daemon: a catch-all, one daemon per socket, connections per peer -------------


@pytest.fixture
def daemon(db: NextcloudDB, tmp_path: Path):
    with db.engine.begin() as conn:
        population.populate(conn, "oc_")
    config, sock = daemon_config(db, tmp_path, "peer_connections = 3\n")
    d = Daemon(config, sock)
    yield d
    d.stop()


def _raw(sock_path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    s.sendall(b"VERSION\t1\t0\n")
    assert s.recv(100) == b"VERSION\t1\t0\n"
    return s


def _line(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        assert chunk, "connection closed"
        buf += chunk
    return buf


def test_a_request_that_cannot_be_answered_gets_tempfail_on_the_same_connection(daemon) -> None:
    """Finding 12: a NUL in a request id used to raise while encoding the answer: no
    reply, the connection lost, "verdict=ok" in the log. Now the client gets TEMPFAIL
    and the connection serves the next request."""
    with _raw(daemon.socket) as s:
        s.sendall(f"AUTH\tid\x00x\talice@{D}\t{P}\n".encode())
        assert _line(s).startswith(b"TEMPFAIL\tidx\treason=malformed request")
        s.sendall(f"AUTH\t7\talice@{D}\t{P}\n".encode())
        assert _line(s).startswith(b"OK\t7\tuser=alice@")
    assert "verdict=ok" in daemon.log() and "Unhandled exception" not in daemon.log()
    assert "malformed request: NUL byte (request idx)" in daemon.log()
    assert int(daemon.stats()["verdict_tempfail"]) == 1


def test_connections_per_peer_are_capped(daemon) -> None:
    """Finding 13: one local user cannot hold every descriptor of the daemon."""
    held = [_raw(daemon.socket) for _ in range(3)]
    before = daemon.open_fds()
    try:
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.settimeout(10)
        extra.connect(str(daemon.socket))
        assert b"too many connections" in extra.recv(200)
        extra.close()
    finally:
        held.pop().close()
    wait_for(lambda: daemon.open_fds() <= before - 1)  # the daemon let go of the refused and the closed one
    with _raw(daemon.socket) as s:  # a slot is free again
        s.sendall(f"LOOKUP\t1\talice@{D}\n".encode())
        assert _line(s).startswith(b"OK\t1\t")
    for s in held:
        s.close()


def test_a_second_daemon_does_not_steal_a_live_socket(daemon) -> None:
    """Finding 13: a second `ncauth serve` on the same socket used to delete the first
    one's socket; now it refuses to start and the first keeps answering."""
    proc = subprocess.run(
        [str(NCAUTH), "serve", "--config", str(daemon.config)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 78 and "another ncauth serve is answering" in proc.stderr
    assert daemon.ask("LOOKUP", f"alice@{D}").verdict == "OK"


# --- 6. every refusal costs what an unknown user's does ---------------------------------------


def test_a_refusal_waits_for_the_decoy_whatever_the_users_hash(
    db: NextcloudDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6 (and the review after it): a user whose stored hash is cheaper than
    Nextcloud's parameters (bcrypt, older argon2 settings) must not be refused faster than
    an unknown user: the refusal waits until the decoy's measured time has passed (or runs
    the decoy when none was measured yet); a success does not. The decoy is slowed down
    here so that the difference is plain."""
    import bcrypt

    with db.engine.begin() as conn:
        ncschema.add_user(conn, "oc_", "old", "1|" + bcrypt.hashpw(P.encode(), bcrypt.gensalt(4)).decode())
        ncschema.add_user(conn, "oc_", "dis", "1|" + bcrypt.hashpw(P.encode(), bcrypt.gensalt(4)).decode())
        ncschema.disable_user(conn, "oc_", "dis")
    config = _config(db, f'domains = ["{D}"]')
    real_decoy = hashes.decoy

    def slow_decoy(*args):
        time.sleep(0.4)
        real_decoy(*args)

    monkeypatch.setattr(hashes, "decoy", slow_decoy)
    auth = Authenticator(config)

    def seconds(login: str, password: str) -> tuple[float, Outcome]:
        started = time.perf_counter()
        verdict = auth.authenticate(login, password.encode())
        return time.perf_counter() - started, verdict.outcome

    try:
        for login, password, outcome in (
            (f"ghost@{D}", P, Outcome.UNKNOWN),
            (f"old@{D}", "wrong", Outcome.REFUSED),
            (f"dis@{D}", P, Outcome.REFUSED),
        ):
            took, got = seconds(login, password)
            assert got is outcome and took >= 0.4, (login, took)
        took, got = seconds(f"old@{D}", P)
        assert got is Outcome.OK and took < 0.4
    finally:
        auth.store.close()


def test_a_cheaper_hash_and_its_decoy_fit_dovecots_256_mib(db: NextcloudDB) -> None:
    """A 64 MiB hash of older parameters (t=3) is cheaper than Nextcloud's default decoy
    (64 MiB, t=4), so its refusal also spends the decoy: never at the same time as the
    real check (a second review found a decoy thread beside it made the *correct*
    password fail under Dovecot's 256 MiB address-space limit). Both verdicts hold."""
    from argon2 import PasswordHasher

    with db.engine.begin() as conn:
        ncschema.add_user(
            conn, "oc_", "older", "3|" + PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1).hash(P)
        )
    text = population.config_text(db.url, db.prefix).replace(
        "hashing_memory_cost = 8192\nhashing_time_cost = 1\n", ""
    )
    config = db.directory / "big.toml"
    config.write_text(text + f'\n[accounts]\ndomains = ["{D}"]\n')
    config.chmod(0o600)
    assert checkpassword(config, request(f"older@{D}", P), address_space=256 << 20).code == 0
    assert checkpassword(config, request(f"older@{D}", "wrong"), address_space=256 << 20).code == 1


def test_checkpassword_never_decides_past_a_daemon_that_is_there(daemon) -> None:
    """Review finding: a daemon that refuses the connection (too many) or does not answer
    in time used to count as "not there", and checkpassword then decided in-process,
    without the daemon's throttle. Now only a missing daemon is; the rest is 111."""
    config = daemon.config
    held = [_raw(daemon.socket) for _ in range(3)]  # peer_connections = 3
    before = daemon.open_fds()
    try:
        r = checkpassword(config, request(f"alice@{D}", P))
        assert r.code == 111 and "deciding in-process" not in r.stderr
    finally:
        for s in held:
            s.close()
    wait_for(lambda: daemon.open_fds() <= before - 3)  # the daemon let go of all three
    assert checkpassword(config, request(f"alice@{D}", P)).code == 0  # the daemon decides again
    daemon.proc.send_signal(signal.SIGSTOP)  # there, but silent
    try:
        slow = config.with_name("slow.toml")
        slow.write_text(config.read_text().replace("[daemon]\n", "[daemon]\nreply_timeout = 0.5\n"))
        slow.chmod(0o600)
        r = checkpassword(slow, request(f"alice@{D}", P))
        assert r.code == 111 and "no answer in time" in r.stderr and "deciding in-process" not in r.stderr
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    daemon.stop()
    r = checkpassword(config, request(f"alice@{D}", P))  # gone: decide here
    assert r.code == 0 and "deciding in-process" in r.stderr


def test_email_match_through_checkpassword_never_reaches_another_mailbox(db: NextcloudDB) -> None:
    """Finding 1 through a real checkpassword process: an address copied by another user
    reaches nobody, and an address's owner gets the mailbox named by her account."""
    _users(db, ("Anna", P), ("eve", HOSTILE_P), ("boss", P))
    _email(db, "Anna", f"anna.k@{D}")
    _email(db, "boss", f"boss@{D}")
    _email(db, "eve", f"BOSS@{D}")  # eve copies the boss's address
    config = db.write_config(
        f'\n[accounts]\ndomains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true\n'
        '[userdb]\nuid = "vmail"\ngid = "vmail"\nhome = "/var/vmail/{domain}/{local}"\n'
    )
    for password in (P, HOSTILE_P):
        assert checkpassword(config, request(f"boss@{D}", password)).code == 1
    r = checkpassword(config, request(f"Anna.K@{D}", P))
    assert (r.code, r.reply) == (0, expected_reply(f"anna@{D}"))
    assert checkpassword(config, request(f"anna.k@{D}", HOSTILE_P)).code == 1


def test_account_list_rules_through_checkpassword_reach_no_other_mailbox(db: NextcloudDB) -> None:
    """Today's rules through a real checkpassword process (logins exit 0/1, lookups with
    AUTHORIZED=1 exit 2/3):
    - match = "email": while a row carries another row's uid_lower (eve's holds alice's),
      neither logs in nor looks up (the mailbox name would be ambiguous), and an address two
      users have names nobody; once both are mended, alice's address logs her in, and a
      lookup by her canonical name (what doveadm -A hands back) finds that very account.
    - [accounts] groups: a non-member neither logs in nor exists, whatever her address."""
    _users(db, ("alice", P), ("eve", HOSTILE_P), ("mia", HOSTILE_P))
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE oc_users SET uid_lower = 'alice' WHERE uid = 'eve'"))
        ncschema.add_group_member(conn, "oc_", "mail", "alice")
    _email(db, "alice", f"alice.w@{D}")
    _email(db, "eve", f"eve@{D}")
    _email(db, "mia", f"ALICE.W@{D}")  # mia copies alice's address: it names nobody now
    userdb = '[userdb]\nuid = "vmail"\ngid = "vmail"\nhome = "/var/vmail/{domain}/{local}"\n'
    email = db.write_config(
        f'\n[accounts]\ndomains = ["{D}"]\nmatch = "email"\ntrust_user_emails = true\n' + userdb
    )
    lookup = {"AUTHORIZED": "1"}
    for who in (f"eve@{D}", f"alice.w@{D}"):
        for password in (P, HOSTILE_P):
            assert checkpassword(email, request(who, password)).code == 1, (who, password)
        assert checkpassword(email, request(who, ""), lookup).code == 3, who
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE oc_users SET uid_lower = 'eve' WHERE uid = 'eve'"))
    _email(db, "mia", f"mia@{D}")  # the copy gone, alice's address is hers again
    r = checkpassword(email, request(f"alice.w@{D}", P))
    assert (r.code, r.reply) == (0, expected_reply(f"alice@{D}"))
    r = checkpassword(email, request(f"alice@{D}", ""), lookup)  # the canonical name
    assert (r.code, r.reply) == (2, expected_reply(f"alice@{D}"))
    r = checkpassword(email, request(f"eve@{D}", ""), lookup)
    assert (r.code, r.reply) == (2, expected_reply(f"eve@{D}"))
    grouped = db.write_config(
        f'\n[accounts]\ndomains = ["{D}"]\ngroups = ["mail"]\n' + userdb, name="groups.toml"
    )
    assert checkpassword(grouped, request(f"alice@{D}", P)).code == 0
    assert checkpassword(grouped, request(f"mia@{D}", HOSTILE_P)).code == 1
    assert checkpassword(grouped, request(f"mia@{D}", ""), lookup).code == 3
