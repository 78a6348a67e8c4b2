"""Nextcloud as the mail server's one account list, end to end: a real Postfix configured
with exactly the lines of ``ncauth postfix-config``, SMTP AUTH through a real Dovecot 2.3
(Lua mode, asking the daemon), delivery over LMTP into that Dovecot, and the daemon
answering Postfix's maps from the database.

Two set-ups: smtpd chrooted as in Debian's master.cf with the default ``proxy:`` maps, and
smtpd unchrooted with ``--direct``. In the chroot a direct socketmap cannot reach the
daemon's socket at all (every RCPT 451), which is why ``proxy:`` is the default.
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from support import dovecot_e2e, ncschema, population
from support.daemon import Daemon
from support.dovecot_harness import dovecot_tmpdir
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB
from support.postfix_harness import LmtpSink, Postfix, parse_main_cf, postfix_available
from support.require import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.dovecot]

D = population.DOMAIN
ALICE, BOB = population.A, f"bob@{D}"
#: [accounts] groups: Alice, bob and dave (disabled) are members; bea is enabled but not
GROUP = "mail"
OUTSIDER = "someone@elsewhere.example"


@pytest.fixture(scope="module")
def pf_db(mariadb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NextcloudDB]:
    db = NextcloudDB(mariadb.create_database("nc_pfe2e"), "oc_", tmp_path_factory.mktemp("pfe2e")).populate()
    with db.engine.begin() as conn:
        for uid in ("Alice", "bob", "dave"):
            ncschema.add_group_member(conn, db.prefix, GROUP, uid)
    yield db
    db.close()


def _lmtp_listener(queue: Path) -> str:
    """What the comment of ``ncauth postfix-config`` tells the admin to add to Dovecot."""
    return f"""\
protocols = imap lmtp
service lmtp {{
  unix_listener {queue}/private/dovecot-lmtp {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
"""


def _queue_private(queue: Path) -> None:
    """``private/`` as Postfix makes it (postfix:root 0700), before Dovecot puts its
    sockets there, as on a host where Postfix was installed first."""
    postfix = pwd.getpwnam("postfix")
    for directory, mode in ((queue, 0o755), (queue / "private", 0o700)):
        directory.mkdir(mode=mode, exist_ok=True)
        directory.chmod(mode)
    os.chown(queue / "private", postfix.pw_uid, 0)


@dataclass
class Site:
    postfix: Postfix
    dovecot: dovecot_e2e.E2E
    daemon: Daemon
    settings: dict[str, str]
    config: Path
    venv: Path


VARIANTS = [(True, ()), (False, ("--direct",))]


@pytest.fixture(scope="module", params=VARIANTS, ids=["chroot-proxy", "nochroot-direct"])
def site(request: pytest.FixtureRequest, mariadb, pf_db: NextcloudDB, dovecot_venv: Path) -> Iterator[Site]:
    if reason := postfix_available():
        unavailable(reason)
    chroot, flags = request.param
    root = dovecot_tmpdir("ncauth-pfe2e-")
    queue = root / "postfix" / "queue"
    (root / "postfix").mkdir()
    _queue_private(queue)
    (root / "dovecot").mkdir()
    dovecot, daemon = dovecot_e2e.start(
        "lua",
        "2.3",
        True,
        mariadb,
        pf_db.url,
        pf_db.prefix,
        dovecot_venv,
        root=root / "dovecot",
        accounts_extra=f'groups = ["{GROUP}"]\n',
        ncauth_extra=f'\n[postfix]\nsocket = "{root}/postfix-map.sock"\n',
        extra_config=_lmtp_listener(queue),
        postfix_socket=queue / "private" / "auth",
        postfix_owner="postfix",
    )
    assert daemon is not None
    config = dovecot.root / "ncauth.toml"
    settings = parse_main_cf(
        dovecot_e2e.ncauth(dovecot_venv, "postfix-config", "--config", str(config), *flags)
    )
    postfix = Postfix(
        root / "postfix",
        recipient_maps=settings["virtual_mailbox_maps"],
        transport=settings["virtual_transport"],
        main=settings,
        chroot=chroot,
    )
    try:
        postfix.start()
        yield Site(postfix, dovecot, daemon, settings, config, dovecot_venv)
    finally:
        postfix.stop()
        dovecot.stop()
        record_output(postfix.log_text(), dovecot.log_text())
        assert daemon.stop() == 0
        shutil.rmtree(root, ignore_errors=True)


def test_the_generated_maps_are_in_use(site: Site) -> None:
    """Not the harness's defaults: the daemon's socket, proxied exactly when chrooted."""
    maps = site.settings["virtual_mailbox_maps"]
    assert maps.endswith(f"{site.daemon.config.parent.parent}/postfix-map.sock:recipients")
    assert maps.startswith("proxy:") == site.postfix.chroot
    assert site.postfix.settings["smtpd_sasl_path"] == "private/auth"


def _rcpt(
    site: Site, *recipients: str, sender: str = OUTSIDER, login: str | None = None
) -> list[tuple[int, str]]:
    with site.postfix.smtp() as s:
        s.ehlo()
        if login is not None:
            s.login(login, population.P)
        code, reply = s.mail(sender)
        assert code == 250, reply
        return [(c, r.decode()) for c, r in (s.rcpt(r) for r in recipients)]


def _message(sender: str, recipient: str) -> tuple[EmailMessage, str]:
    tag = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, recipient, f"ncauth e2e {tag}"
    msg.set_content("delivered through Postfix and Dovecot LMTP\n")
    return msg, tag


def _wait_in_inbox(site: Site, login: str, tag: str, timeout: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        for message in site.dovecot.imap_inbox(login, population.P):
            if tag.encode() in message:
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"{tag} not in {login}'s INBOX:\n{site.postfix.log_text()[-3000:]}")
        time.sleep(0.2)


def test_mail_to_an_enabled_member_lands_in_her_inbox(site: Site) -> None:
    msg, tag = _message(OUTSIDER, "Alice@Example.ORG")
    with site.postfix.smtp() as s:
        assert s.send_message(msg) == {}
    delivered = _wait_in_inbox(site, ALICE, tag)
    assert b"Delivered-To: Alice@Example.ORG" in delivered  # as sent; the mailbox is alice's
    site.postfix.wait_for_log(
        rf"(?i)to=<{ALICE}>.*relay=[^,]*private/dovecot-lmtp.*status=sent .250 2.0.0", timeout=30
    )
    assert all(tag.encode() not in m for m in site.dovecot.imap_inbox(BOB, population.P))


def test_unknown_disabled_and_non_members_get_5xx_at_rcpt(site: Site) -> None:
    replies = _rcpt(site, ALICE, f"carol@{D}", f"dave@{D}", f"bea@{D}", BOB)
    assert [code for code, _ in replies] == [250, 550, 550, 550, 250], replies
    for _, text in replies[1:4]:
        assert text.startswith("5.1.1") and "User unknown in virtual mailbox table" in text


def test_sender_must_be_the_login_s_own_address(site: Site) -> None:
    [(code, text)] = _rcpt(site, OUTSIDER, sender=BOB, login=ALICE)  # AUTH alice, MAIL FROM bob
    assert code == 553 and text.startswith("5.7.1") and f"not owned by user {ALICE}" in text, text
    # addresses the map does not know (dave is disabled, carol does not exist):
    # reject_known_sender_login_mismatch would let alice send as these
    for unowned in (f"dave@{D}", f"carol@{D}"):
        [(code, text)] = _rcpt(site, OUTSIDER, sender=unowned, login=ALICE)
        assert code == 553 and f"not owned by user {ALICE}" in text, text
    [(code, text)] = _rcpt(site, ALICE, sender=BOB)  # not logged in: bob's address is bob's
    assert code == 553 and "not logged in" in text, text
    msg, tag = _message(ALICE, BOB)
    with site.postfix.smtp() as s:
        s.login("Alice@Example.org", population.P)  # Dovecot hands Postfix the canonical name
        assert s.send_message(msg) == {}
    _wait_in_inbox(site, BOB, tag)


def test_database_outage_is_4xx_and_nothing_bounces(site: Site, mariadb) -> None:
    mark = site.postfix.log_mark()
    mariadb.stop()
    try:
        replies = _rcpt(site, ALICE, f"carol@{D}")
        assert [code for code, _ in replies] == [451, 451], replies
        assert all(text.startswith("4.3.0") for _, text in replies)
        # a whole message: refused for now, not accepted
        with site.postfix.smtp() as s, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            s.send_message(_message(OUTSIDER, ALICE)[0])
        assert refused.value.recipients[ALICE][0] == 451
    finally:
        mariadb.start()
    deadline = time.monotonic() + 30
    while (codes := [c for c, _ in _rcpt(site, ALICE, f"carol@{D}")]) != [250, 550]:
        assert time.monotonic() < deadline, codes
        time.sleep(0.5)
    log = site.postfix.log_since(mark)
    assert "temporary error" in log, log[-3000:]
    assert "status=bounced" not in log and "non-delivery notification" not in log, log[-3000:]


def test_a_direct_socketmap_works_only_unchrooted(site: Site, tmp_path: Path) -> None:
    """Why ``proxy:`` is the default: a chrooted smtpd looks for the socket inside the
    jail (the queue directory) and every recipient, known or not, gets 451; unchrooted,
    the same direct map answers."""
    chroot = site.postfix.chroot
    direct = parse_main_cf(
        dovecot_e2e.ncauth(site.venv, "postfix-config", "--config", str(site.config), "--direct")
    )
    root = dovecot_tmpdir("ncauth-pfe2e-direct-")
    try:
        with LmtpSink() as sink:
            pf = Postfix(
                root, recipient_maps=direct["virtual_mailbox_maps"], transport=sink.transport, chroot=chroot
            )
            with pf:
                with pf.smtp() as s:
                    s.ehlo()
                    s.mail(OUTSIDER)
                    codes = [s.rcpt(r)[0] for r in (ALICE, f"carol@{D}")]
                log = pf.wait_for_log(r"postfix-map\.sock: No such file or directory") if chroot else ""
            record_output(pf.log_text())
        assert codes == ([451, 451] if chroot else [250, 550]), log[-2000:] or pf.log_text()[-2000:]
    finally:
        shutil.rmtree(root, ignore_errors=True)
