"""The Postfix harness against a real Postfix (Debian 12: 3.7): what its smtpd answers for
recipients found, unknown and unavailable in the maps, what it makes of socketmap replies
(ncauth.socketmap served to it), and that an accepted message reaches the LMTP sink.

These are the building blocks of the end-to-end tests that will point the same maps at
ncauth's socket; the Postfix behaviour asserted here is what those will rely on."""

from __future__ import annotations

import shutil
import socket
import socketserver
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.dovecot_harness import Dovecot, dovecot_available, dovecot_tmpdir
from support.leakcheck import record_output
from support.postfix_harness import LmtpSink, Postfix, SocketmapServer, postfix_available
from support.require import unavailable

from ncauth.socketmap import MAX_REQUEST, NetstringDecoder, Reply, Request, netstring, parse_request

pytestmark = [pytest.mark.slow, pytest.mark.dovecot]

#: Dovecot's SASL for smtpd: any user with this made-up password (the sender tests need
#: SMTP AUTH: reject_sender_login_mismatch does nothing while smtpd_sasl_auth_enable is off)
SASL_PASSWORD = "harness-sasl-pw"
SASL_CONFIG = f"""\
passdb {{
  driver = static
  args = password={SASL_PASSWORD}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup allow_all_users=yes
}}
"""


async def directory(request: Request) -> Reply:
    """A stand-in for ncauth's maps: a few fixed answers per socketmap name."""
    if request.name == "recipients":
        if request.key == "tempfail@example.org":
            return Reply.temp("database unavailable")
        if request.key == "viasocket@example.org":
            return Reply.ok("viasocket@example.org")
        return Reply.notfound()
    if request.name == "senders":
        if request.key == "owned@example.org":
            return Reply.ok("alice@example.org")
        if request.key == "dbdown@example.org":
            return Reply.temp("database unavailable")
        return Reply.notfound()
    return Reply.perm(f"no socketmap named {request.name}")


class EmptyOkServer:
    """A socketmap server that answers ``OK `` (empty data) for empty@example.org, which
    ncauth.socketmap refuses to send: to see what Postfix makes of it."""

    def __init__(self, path: Path) -> None:
        class Session(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                decoder = NetstringDecoder(MAX_REQUEST)
                while chunk := self.request.recv(4096):
                    for frame in decoder.feed(chunk):
                        key = parse_request(frame).key
                        self.request.sendall(
                            netstring(b"OK " if key == "empty@example.org" else b"NOTFOUND ")
                        )

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Session)
        self.server.daemon_threads = True
        path.chmod(0o666)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Site:
    """One running instance with its sink, socketmap servers and texthash file."""

    def __init__(self, root: Path, postfix: Postfix, sink: LmtpSink, sockmap: SocketmapServer) -> None:
        self.root, self.postfix, self.sink, self.sockmap = root, postfix, sink, sockmap
        self.recipients_file = root / "recipients"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    reason = postfix_available() or dovecot_available()
    if reason:
        unavailable(reason)
    root = dovecot_tmpdir("ncauth-postfix-")  # 0755 under /tmp: user postfix reaches it
    recipients = root / "recipients"
    recipients.write_text("alice@example.org alice\nbob@example.org bob\n")
    recipients.chmod(0o644)
    sockmap = SocketmapServer(root / "sockmap", directory).start()
    empty = EmptyOkServer(root / "emptyok")
    sink = LmtpSink().start()
    dovecot = Dovecot(root / "dovecot", SASL_CONFIG)
    postfix = Postfix(
        root / "postfix",
        recipient_maps=(
            f"texthash:{recipients}, {sockmap.spec('recipients')}, socketmap:unix:{root / 'emptyok'}:any"
        ),
        sender_login_maps=sockmap.spec("senders"),
        transport=sink.transport,
        sasl_path=str(dovecot.auth_smtp_socket),
    )
    try:
        dovecot.start()
        postfix.start()
        yield Site(root, postfix, sink, sockmap)
    finally:
        postfix.stop()
        dovecot.stop()
        record_output(postfix.log_text(), dovecot.log_text())
        sink.stop()
        empty.stop()
        sockmap.stop()
        shutil.rmtree(root, ignore_errors=True)


def rcpt_codes(
    site: Site, *recipients: str, sender: str = "someone@elsewhere.example", login: str | None = None
) -> list[tuple[int, str]]:
    """Open one SMTP session (AUTH as *login* if given), MAIL FROM *sender*, and RCPT each
    of *recipients*."""
    with site.postfix.smtp() as s:
        s.ehlo()
        if login is not None:
            s.login(login, SASL_PASSWORD)
        code, reply = s.mail(sender)
        assert code == 250, reply
        return [(c, r.decode()) for c, r in (s.rcpt(r) for r in recipients)]


def test_listed_recipient_accepted_unlisted_rejected(site: Site) -> None:
    (listed, unlisted) = rcpt_codes(site, "alice@example.org", "nobody@example.org")
    assert listed[0] == 250
    assert unlisted[0] == 550
    assert "User unknown in virtual mailbox table" in unlisted[1]


def test_socketmap_hit_notfound_and_temp(site: Site) -> None:
    found, missing, temp = rcpt_codes(
        site, "viasocket@example.org", "nobody@example.org", "tempfail@example.org"
    )
    assert found[0] == 250
    assert missing[0] == 550
    # smtpd folds the key to lower case before it asks the socketmap (DICT_FLAG_FOLD_MUL)
    [(upper, _)] = rcpt_codes(site, "ViaSocket@Example.ORG")
    assert upper == 250
    # a TEMP reply is a temporary lookup failure: 451 4.3.0, never "user unknown"
    assert temp[0] == 451, temp
    assert temp[1].startswith("4.3.0")
    site.postfix.wait_for_log(r"socketmap server temporary error: database unavailable")


def test_empty_ok_is_a_temporary_error_not_a_hit(site: Site) -> None:
    # maps.c maps_find(): why ncauth.socketmap.Reply.ok refuses empty data
    mark = site.postfix.log_mark()
    [(code, text)] = rcpt_codes(site, "empty@example.org")
    assert code == 451, text
    site.postfix.wait_for_log(r"returns an empty string result", since=mark)


def test_sender_login_maps_over_socketmap(site: Site) -> None:
    # smtpd_delay_reject: the sender restriction answers at RCPT time
    def rcpt(sender: str, login: str | None) -> tuple[int, str]:
        [reply] = rcpt_codes(site, "bob@example.org", sender=sender, login=login)
        return reply

    assert rcpt("owned@example.org", "alice@example.org")[0] == 250  # the owner
    code, text = rcpt("owned@example.org", "bob@example.org")  # AUTH as B, MAIL FROM A's address
    assert code == 553 and "not owned by user bob@example.org" in text, text
    code, text = rcpt("owned@example.org", None)
    assert code == 553 and "not logged in" in text, text
    assert rcpt("free@example.org", None)[0] == 250  # no owner listed: anyone
    code, text = rcpt("dbdown@example.org", "alice@example.org")  # outage: 4xx, never accepted
    assert code == 451 and text.startswith("4.3.0"), text


def test_one_connection_serves_a_whole_session(site: Site) -> None:
    before = site.sockmap.connections
    keys = [f"nobody{i}@example.org" for i in range(8)]
    assert all(code == 550 for code, _ in rcpt_codes(site, *keys))
    assert site.sockmap.connections - before <= 1  # Postfix reuses its socketmap connection


def test_accepted_message_reaches_the_lmtp_sink(site: Site) -> None:
    msg = EmailMessage()
    msg["From"] = "someone@elsewhere.example"
    msg["To"] = "bob@example.org"
    msg["Subject"] = "harness self-test"
    msg.set_content("hello\n.leading dot\n")
    with site.postfix.smtp() as s:
        refused = s.send_message(msg)
    assert refused == {}
    delivery = site.sink.wait_for("bob@example.org")
    assert delivery.mail_from == "someone@elsewhere.example"
    assert b"Subject: harness self-test" in delivery.data
    assert b"\n.leading dot" in delivery.data  # dot-stuffing undone on both hops


def test_postmap_queries(site: Site) -> None:
    pf, recipients = site.postfix, f"texthash:{site.recipients_file}"
    hit = pf.postmap_query(recipients, "alice@example.org")
    assert (hit.value, hit.error) == ("alice", None)
    assert hit.seconds > 0
    assert not pf.postmap_query(recipients, "nobody@example.org").found
    socket_map = site.sockmap.spec("recipients")
    assert pf.postmap_query(socket_map, "viasocket@example.org").value == "viasocket@example.org"
    miss = pf.postmap_query(socket_map, "nobody@example.org")
    assert (miss.value, miss.error) == (None, None)
    temp = pf.postmap_query(socket_map, "tempfail@example.org")
    assert temp.error is not None and "temporary error: database unavailable" in temp.error
    # the batch form: one process and one connection for many keys
    before = site.sockmap.connections
    keys = ["viasocket@example.org", *(f"n{i}@example.org" for i in range(50))]
    found, seconds = pf.postmap_query_many(socket_map, keys)
    assert found == {"viasocket@example.org": "viasocket@example.org"}
    assert seconds > 0
    assert site.sockmap.connections - before == 1


def test_stop_leaves_nothing_listening(tmp_path: Path) -> None:
    reason = postfix_available()
    if reason:
        unavailable(reason)
    root = dovecot_tmpdir("ncauth-postfix-")
    try:
        with LmtpSink() as sink:
            pf = Postfix(root, recipient_maps=f"texthash:{root / 'none'}", transport=sink.transport)
            (root / "none").write_text("")
            with pf:
                assert pf.proc is not None and pf.proc.poll() is None
                port = pf.smtp_port
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
            assert pf.proc is None
            record_output(pf.log_text())
    finally:
        shutil.rmtree(root, ignore_errors=True)
