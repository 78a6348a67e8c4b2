"""fail2ban/filter.d/ncauth.conf and jail.d/ncauth.conf with the real fail2ban (Debian 12: 1.0.2).

The log lines come from a real ``ncauth serve``: a password sprayer until it is throttled, a
distributed guess at one account, an owner who logs in (and mistypes once), an MX doing LMTP
lookups of unknown recipients, a hostile login, and a second daemon whose database is down.
``fail2ban-regex`` must match exactly the refusals and the throttled answers, and a real
``fail2ban-server`` (private config dir, socket and pidfile; the stock ``dummy`` action,
which only writes the address to a file) must ban the sprayer and nobody else.

The daemon writes bare ``ncauth: ...`` lines to stderr; journald stamps them, and rsyslog
writes them to a file as ``<date> <host> ncauth[<pid>]: ncauth: ...``. The tests add that
prefix and nothing else: the part the filter decides on is the daemon's own output.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import population
from support.daemon import Daemon, daemon_config, wait_for
from support.dovecot_e2e import ncauth
from support.dovecot_harness import Dovecot, dovecot_tmpdir
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB
from support.population import DOMAIN, A, P
from support.require import unavailable

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "fail2ban" / "filter.d" / "ncauth.conf"
JAILS = ROOT / "fail2ban" / "jail.d" / "ncauth.conf"
SYSTEM_CONF = Path("/etc/fail2ban")

SPRAYER = "203.0.113.66"  # one address, many accounts: refused, then throttled
BOTNET = [f"198.51.100.{i}" for i in range(10, 16)]  # one try each at Alice's account
OWNER = "192.0.2.20"  # Alice at home: logs in, mistypes once
MX = "192.0.2.25"  # LMTP lookups of unknown recipients: not login attempts
HOSTILE = "198.51.100.99"  # the address of the client sending the hostile login
INJECTED = "203.0.113.9"  # the address the hostile login names
OUTAGE = "192.0.2.77"  # logs in while the database is down
INJECTION = f'x" rip={INJECTED} verdict="fail'
IP_FAILURES, USER_FAILURES = 5, 4


def fail2ban_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"no {name} (apt-get install fail2ban)")
    assert path is not None
    return path


@dataclass
class SprayLog:
    """The syslog-style log file and what the daemons answered, per client address."""

    path: Path
    answers: dict[str, list[str]] = field(default_factory=dict)  # rip -> verdict[:throttled]

    def note(self, rip: str, verdict: str, reason: str = "") -> None:
        self.answers.setdefault(rip, []).append(verdict + (":throttled" if "throttled" in reason else ""))

    def expected_matches(self) -> Counter[str]:
        """Per address: the refusals and throttled answers the daemon gave (lookups excluded)."""
        counts = Counter(
            {
                rip: sum(a in ("FAIL", "UNKNOWN", "TEMPFAIL:throttled") for a in answers)
                for rip, answers in self.answers.items()
                if rip != MX
            }
        )
        return +counts  # addresses without one dropped


def syslog_lines(daemon_log: str, pid: int) -> str:
    """The daemon's stderr as rsyslog writes it from the journal (ncauth.service)."""
    stamp = time.strftime("%b %d %H:%M:%S")
    return "".join(f"{stamp} mx ncauth[{pid}]: {line}\n" for line in daemon_log.splitlines())


@pytest.fixture(scope="module")
def spray_log(tmp_path_factory: pytest.TempPathFactory) -> SprayLog:
    fail2ban_tool("fail2ban-regex")
    tmp = tmp_path_factory.mktemp("f2b-spray")
    db = NextcloudDB(f"sqlite:///{tmp / 'nextcloud.db'}", "oc_", tmp).populate()
    log = SprayLog(tmp / "mail.log")
    text = ""
    try:
        config, sock = daemon_config(
            db,
            tmp,
            f"throttle_ip_failures = {IP_FAILURES}\nthrottle_user_failures = {USER_FAILURES}\n",
        )
        d = Daemon(config, sock)
        try:

            def auth(login: str, password: str, rip: str) -> None:
                a = d.ask("AUTH", login, password, "service=imap", f"rip={rip}")
                log.note(rip, a.verdict, a.fields.get("reason", ""))

            auth(A, P, OWNER)
            auth(A, "correct horse battery stapel", OWNER)  # a typo: one failure, no ban
            auth(A, P, OWNER)
            for i in range(IP_FAILURES + 3):  # refused until throttled, then throttled
                auth(f"user{i}@{DOMAIN}" if i % 2 else f"dave@{DOMAIN}", "Summer2026!", SPRAYER)
            for rip in BOTNET:  # distributed: the account is throttled, the addresses are not
                auth(A, "Winter2026!", rip)
            auth(A, P, OWNER)  # her known address still gets in
            auth(INJECTION, "Summer2026!", HOSTILE)
            for i in range(8):
                a = d.ask("LOOKUP", f"nobody{i}@{DOMAIN}", "service=lmtp", f"rip={MX}")
                log.note(MX, a.verdict)
            assert log.answers[MX] == ["UNKNOWN"] * 8
        finally:
            assert d.stop() == 0
        text += syslog_lines(d.log(), d.proc.pid)

        # the database is down: every login is a TEMPFAIL, and must ban nobody
        down = tmp / "down"
        down.mkdir()
        # nothing listens on port 1 (a missing SQLite file would be a config error, not an outage)
        dead = SimpleNamespace(url="mysql+pymysql://nc@127.0.0.1:1/nextcloud", prefix="oc_")
        config, sock = daemon_config(dead, down)  # type: ignore[arg-type]
        d = Daemon(config, sock)
        try:
            for i in range(IP_FAILURES + 3):
                a = d.ask("AUTH", A, P if i % 2 else "wrong", "service=imap", f"rip={OUTAGE}")
                assert a.verdict == "TEMPFAIL" and "database" in a.fields["reason"], a
                log.note(OUTAGE, a.verdict, a.fields["reason"])
        finally:
            assert d.stop() == 0
        text += syslog_lines(d.log(), d.proc.pid)
    finally:
        db.close()
    log.path.write_text(text)
    record_output(text)
    return log


def private_confdir(tmp: Path) -> Path:
    """A fail2ban config dir holding the stock common parts and ncauth's filter and jails."""
    conf = tmp / "fail2ban"
    (conf / "filter.d").mkdir(parents=True)
    (conf / "action.d").mkdir()
    (conf / "jail.d").mkdir()
    for name in ("paths-common.conf", "paths-debian.conf", "filter.d/common.conf", "action.d/dummy.conf"):
        shutil.copy(SYSTEM_CONF / name, conf / name)
    shutil.copy(FILTER, conf / "filter.d")
    shutil.copy(JAILS, conf / "jail.d")
    return conf


def fail2ban_regex(log: Path, conf: Path, *args: str) -> str:
    proc = subprocess.run(
        [fail2ban_tool("fail2ban-regex"), *args, str(log), str(conf / "filter.d" / "ncauth.conf")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def summary(output: str) -> tuple[int, int, int]:
    """fail2ban-regex's ``Lines: N lines, I ignored, M matched, K missed``."""
    m = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", output, re.M)
    assert m, output
    lines, ignored, matched, missed = map(int, m.groups())
    assert lines == ignored + matched + missed
    return matched, missed, ignored


@pytest.mark.slow
def test_filter_matches_refusals_and_throttling_only(spray_log: SprayLog, tmp_path: Path) -> None:
    conf = private_confdir(tmp_path)
    text = spray_log.path.read_text()
    decisions = text.count(" ncauth: verdict=")
    assert decisions == sum(len(a) for a in spray_log.answers.values())

    # what the daemon answered: the sprayer throttled, the account throttled for the botnet
    assert spray_log.answers[SPRAYER] == ["FAIL", "UNKNOWN"] * 2 + ["FAIL"] + ["TEMPFAIL:throttled"] * 3
    # Alice's own typo was the account's first failure
    botnet = [a for rip in BOTNET for a in spray_log.answers[rip]]
    assert botnet == ["FAIL"] * (USER_FAILURES - 1) + ["TEMPFAIL:throttled"] * (
        len(BOTNET) - USER_FAILURES + 1
    )
    assert spray_log.answers[OWNER] == ["OK", "FAIL", "OK", "OK"]
    assert spray_log.answers[OUTAGE] == ["TEMPFAIL"] * (IP_FAILURES + 3)
    assert "reason=\"throttled: too many failed logins for this user\"" in text
    assert f'reason="throttled: too many failed logins from {SPRAYER}"' in text

    expected = spray_log.expected_matches()
    matched, missed, ignored = summary(fail2ban_regex(spray_log.path, conf))
    assert matched == sum(expected.values()) == 8 + 6 + 1 + 1
    assert ignored == 0 and missed == len(text.splitlines()) - matched

    # per line: the address fail2ban takes from each match is the client's, as the daemon saw it
    ips = Counter(fail2ban_regex(spray_log.path, conf, "-o", "ip").split())
    assert ips == expected
    assert INJECTED not in ips and MX not in ips and OUTAGE not in ips

    # and the missed lines are exactly the successes, the lookups, the outage and the chatter
    out = fail2ban_regex(spray_log.path, conf, "--print-all-missed")
    missed_decisions = re.findall(r"ncauth: (verdict=\S+ .*)", out.split("Lines:", 1)[1])
    verdicts = Counter(line.split()[0] for line in missed_decisions)
    assert verdicts == {"verdict=ok": 3, "verdict=unknown": 8, "verdict=tempfail": IP_FAILURES + 3}
    assert all("service=lmtp" in v for v in missed_decisions if v.startswith("verdict=unknown"))
    assert all('reason="database' in v for v in missed_decisions if v.startswith("verdict=tempfail"))


#: Lines as ncauth's log.decision() prints a login a client chose (log.printable escapes
#: `"` and `\`), each in the three places the filter reads: a file rsyslog writes from the
#: journal, Dovecot 2.3's own log_path, and the journal as fail2ban's systemd backend shows it.
HOSTILE_LOGINS = [
    INJECTION,
    f'x\\" rip={INJECTED} via=daemon reason="wrong password" ms=1 "',
    f"{INJECTED}",
    f'" rip={INJECTED} via=checkpassword reason="throttled: x" ms=1\nverdict=tempfail login="',
]


def decision_line(login: str, verdict: str = "unknown", reason: str = "no such user") -> str:
    """The message ncauth's own code logs for *login* from HOSTILE (log.decision, unchanged)."""
    import io

    from ncauth import log

    stream = io.StringIO()
    saved = log.logger.handlers[:], log.logger.level, log.logger.propagate
    log.setup("info", stream=stream)
    try:
        log.decision(
            verdict=verdict,
            login=login,
            reason=reason,
            ms=1.0,
            service="imap",
            remote_ip=HOSTILE,
            via="daemon",
        )
    finally:
        log.logger.handlers[:], level, log.logger.propagate = saved
        log.logger.setLevel(level)
    line = stream.getvalue()
    assert line.count("\n") == 1, line
    return line.rstrip("\n")


@pytest.mark.parametrize(
    "prefix",
    [
        "{stamp} mx ncauth[4242]: ",
        "{stamp} auth: Info: ",
        "{stamp} auth: Warning: ",
        "{stamp} mx dovecot[42]: auth: Info: ",
    ],
    ids=["syslog-daemon", "dovecot-log-info", "dovecot-log-warning", "syslog-dovecot"],
)
def test_a_hostile_login_cannot_choose_the_banned_address(prefix: str, tmp_path: Path) -> None:
    """A login carrying its own ``rip=``, quotes, backslashes or a newline: fail2ban takes
    the address from ncauth's rip= field, or matches nothing; never the injected one."""
    conf = private_confdir(tmp_path)
    stamp = time.strftime("%b %d %H:%M:%S")
    logfile = tmp_path / "hostile.log"
    messages = [decision_line(login) for login in HOSTILE_LOGINS]
    messages.append(decision_line(INJECTION, "tempfail", f"database: no such user {INJECTION}"))
    messages.append(decision_line(INJECTION, "ok", "password (argon2id)"))
    logfile.write_text("".join(prefix.format(stamp=stamp) + m + "\n" for m in messages))
    ips = Counter(fail2ban_regex(logfile, conf, "-o", "ip").split())
    assert ips == {HOSTILE: len(HOSTILE_LOGINS)}, logfile.read_text()


@pytest.mark.slow
def test_fail2ban_server_bans_the_sprayer_only(spray_log: SprayLog, tmp_path: Path) -> None:
    """The shipped [ncauth-file] jail, enabled on the produced log in a private fail2ban-server
    with the stock dummy action: the sprayer's address (8 matches) is banned; the owner (one
    typo), each botnet address (one try each), the MX and the outage's address are not."""
    conf = private_confdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    banned = run / "banned"
    (conf / "fail2ban.conf").write_text(
        "[Definition]\nloglevel = INFO\n"
        f"logtarget = {run / 'fail2ban.log'}\nsocket = {run / 'f2b.sock'}\n"
        f"pidfile = {run / 'f2b.pid'}\ndbfile = :memory:\n"
    )
    # what jail.conf gives every jail on a real system, minus the firewall
    (conf / "jail.conf").write_text(
        "[INCLUDES]\nbefore = paths-debian.conf\n\n"
        "[DEFAULT]\nbantime = 10m\nfindtime = 10m\nmaxretry = 5\nbackend = polling\n"
        "ignoreself = true\nignoreip = 127.0.0.1/8 ::1\nbanaction = dummy\naction = %(banaction)s\n"
    )
    (conf / "jail.d" / "test.local").write_text(
        f"[ncauth-file]\nenabled = true\nlogpath = {spray_log.path}\naction = dummy[target={banned}]\n"
    )
    base = ["-c", str(conf), "-s", str(run / "f2b.sock"), "-p", str(run / "f2b.pid")]
    client = [fail2ban_tool("fail2ban-client"), *base]
    test = subprocess.run([*client, "-t"], capture_output=True, text=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr
    server = subprocess.Popen(
        [fail2ban_tool("fail2ban-server"), *base, "-f", "-x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: subprocess.run([*client, "ping"], capture_output=True).returncode == 0, 30)
        wait_for(lambda: banned.exists() and f"+{SPRAYER}" in banned.read_text(), 30)
        status = subprocess.run(
            [*client, "status", "ncauth-file"], capture_output=True, text=True, timeout=30
        ).stdout
        banned_list = re.search(r"Banned IP list:\s*(.*)", status)
        assert banned_list and banned_list.group(1).split() == [SPRAYER], status
        assert re.search(r"Total failed:\s*16\b", status), status
        assert [ln for ln in banned.read_text().split() if ln.startswith("+")] == [f"+{SPRAYER}"]
    finally:
        subprocess.run([*client, "stop"], capture_output=True, timeout=30)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        out = server.stdout.read() if server.stdout else ""
        record_output(out, (run / "fail2ban.log").read_text() if (run / "fail2ban.log").exists() else "")


@pytest.mark.slow
@pytest.mark.dovecot
def test_checkpassword_lines_in_dovecots_own_log(dovecot_venv: Path) -> None:
    """Dovecot 2.3 with ncauth-checkpassword (no daemon): the decision lines land in Dovecot's
    log_path as ``<date> auth: Info: ncauth: ...``; the filter takes the client's address
    from them (logins through the Postfix SASL socket, which passes the client's rip), also
    for a hostile login."""
    fail2ban_tool("fail2ban-regex")
    root = dovecot_tmpdir("ncauth-f2b-")
    try:
        db = NextcloudDB(f"sqlite:///{root / 'nextcloud.db'}", "oc_", root).populate()
        db.close()
        os.chmod(root / "nextcloud.db", 0o644)
        config = root / "ncauth.toml"
        accounts = population.STANDARD_CONFIG.split("[userdb]")[0]
        userdb = f'\n[userdb]\nuid = "nobody"\ngid = "nogroup"\nhome = "{root}/mail/{{domain}}/{{local}}"\n'
        config.write_text(population.config_text(db.url, db.prefix) + accounts + userdb)
        os.chown(config, 0, grp.getgrnam("dovecot").gr_gid)
        config.chmod(0o640)
        snippet = root / "ncauth.conf.ext"
        ncauth(
            dovecot_venv,
            *("dovecot-config", "--config", str(config), "--mode", "checkpassword", "--dovecot", "2.3"),
            *("--output", str(snippet), "--postfix-socket", f"{root}/postfix-auth"),
            *("--postfix-user", "root", "--postfix-group", "root"),
        )
        # Dovecot's default auth_username_chars refuses `"` and spaces before ncauth sees them;
        # an empty one (any character) lets the hostile login through to ncauth's log line
        with Dovecot(root, snippet.read_text(), extra_config="auth_username_chars =") as dc:
            assert dc.sasl_plain(A, P, rip=OWNER)[0] == "OK"
            for i in range(6):
                assert (
                    dc.sasl_plain(f"user{i}@{DOMAIN}" if i % 2 else A, "Summer2026!", rip=SPRAYER)[0]
                    == "FAIL"
                )
            assert dc.sasl_plain(INJECTION, "Summer2026!", rip=HOSTILE)[0] == "FAIL"
            dc.wait_for_log(f"rip={HOSTILE}")
            text = dc.log_text()
        record_output(text)
        assert re.search(r"^\w{3} \d\d \d\d:\d\d:\d\d auth: Info: ncauth: verdict=refused ", text, re.M), text
        assert text.count(" ncauth: verdict=") == 8 and "via=checkpassword" in text
        assert f'verdict=\\"fail" service=smtp rip={HOSTILE} via=checkpassword' in text, text
        conf = private_confdir(root / "f2b")
        ips = Counter(fail2ban_regex(dc.log_path, conf, "-o", "ip").split())
        assert ips == {SPRAYER: 6, HOSTILE: 1}, text
    finally:
        shutil.rmtree(root, ignore_errors=True)
