"""Regression tests from a second review (branch review2): each pins a bug found on main
in the one-account-list work (USERS, {quota_bytes}, Postfix maps)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ncschema, population
from support.maps import ask, serving_maps
from support.nextcloud import NextcloudDB

from ncauth import config as config_mod
from ncauth import socketmap
from ncauth.outcome import Outcome
from ncauth.policy import Authenticator
from ncauth.quota import QuotaSettings, quota_bytes

D = population.DOMAIN
H = population.HASH["argon2id-tuned"]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[NextcloudDB]:
    d = NextcloudDB(f"sqlite:///{tmp_path / 'nextcloud.db'}", "oc_", tmp_path)
    yield d
    d.close()


def _config(accounts: str, extra: str = "") -> str:
    return population.STANDARD_CONFIG.replace("[accounts]\n", f"[accounts]\n{accounts}\n", 1) + extra


def _auth(db: NextcloudDB, accounts: str, extra: str = "") -> Authenticator:
    return Authenticator(config_mod.load(str(db.write_config(_config(accounts, extra), name="review2.toml"))))


def _senders(db: NextcloudDB, tmp_path: Path, accounts: str, keys: list[str]) -> list[socketmap.Reply]:
    """The daemon's ``senders`` answers for *keys*, from a real ``ncauth serve``."""
    with serving_maps(db, tmp_path, _config(accounts)) as (path, _):
        return ask(path, *(("senders", k) for k in keys))


def _postfix_owners(reply: socketmap.Reply) -> list[str]:
    """The SASL login names Postfix reads from a smtpd_sender_login_maps result: smtpd_check.c
    reject_auth_sender_login_mismatch splits it with mystrtok(&cp, ", \\t\\r\\n")."""
    return [n for n in re.split(r"[,\s]+", reply.data) if n] if reply.status is socketmap.Status.OK else []


def test_senders_owner_list_cannot_name_another_users_login(db: NextcloudDB, tmp_path: Path) -> None:
    """Nextcloud allows spaces in uids (Manager::validateUserId: [a-zA-Z0-9 _.@\\-']). The
    senders answer for "alice smith"@domain is 'alice smith@domain', which Postfix reads as
    the two owners 'alice' and 'smith@domain': user smith may then send as that address."""
    with db.engine.begin() as c:
        for uid in ("smith", "alice smith"):
            ncschema.add_user(c, "oc_", uid, H)
    replies = _senders(db, tmp_path, "", [f"alice smith@{D}", f"smith@{D}"])
    smith = _postfix_owners(replies[1])
    assert smith == [f"smith@{D}"], replies[1]
    stolen = set(_postfix_owners(replies[0])) & set(smith)
    assert not stolen, f"{smith} may send as 'alice smith@{D}': {replies[0]}"


def test_senders_ignore_a_bare_local_part(db: NextcloudDB, tmp_path: Path) -> None:
    """Postfix looks a sender up as its bare local part only when the sender's domain is
    local ($mydestination, $inet_interfaces, $proxy_interfaces: mail_addr_find's
    MA_FIND_LOCALPART_IF_LOCAL), never for a virtual domain ncauth serves. With
    default_domain set, 'root' (from MAIL FROM:<root@$myhostname>) names the Nextcloud
    user root, so that user may send as the host's root@ (or as any local user's address)."""
    with db.engine.begin() as c:
        ncschema.add_user(c, "oc_", "root", H)
    replies = _senders(db, tmp_path, f'default_domain = "{D}"', ["root", f"root@{D}"])
    assert replies[1].status is socketmap.Status.OK  # the served address has its owner
    assert replies[0].status is socketmap.Status.NOTFOUND, replies[0]


def test_quota_with_more_digits_than_python_converts() -> None:
    """PHP reads a 4301-digit quota as a float (INF: no limit); Python's int() refuses
    strings over 4300 digits (sys.int_info.str_digits_check_threshold), so the lookup raised
    ValueError instead of giving a verdict."""
    for value in ("1" * 4301, "+" + "9" * 5000, " " + "1" * 4400 + " "):
        assert quota_bytes(QuotaSettings(user_quota=value)) is None


def test_quota_with_more_digits_is_a_verdict_not_an_exception(db: NextcloudDB) -> None:
    with db.engine.begin() as c:
        ncschema.add_user(c, "oc_", "alice", H)
        ncschema.set_preference(c, "oc_", "alice", "files", "quota", "1" * 4301)
    auth = _auth(db, "", 'quota_rule = "*:bytes={quota_bytes}"\n')
    try:
        verdict = auth.lookup(population.A)
        assert verdict.ok and verdict.fields["quota_rule"] == "*:bytes=0", verdict
        assert auth.authenticate(population.A, population.P.encode()).ok
    finally:
        auth.store.close()


def test_email_mode_canonical_name_lookup_applies_groups(db: NextcloudDB) -> None:
    """[accounts] groups: "a non-member has no mailbox, for every front end". With
    match = "email", a lookup by canonical name (_by_canonical_name) skipped _member, so
    Dovecot's lookups (LMTP, doveadm user, passdb lookups) found a non-member."""
    with db.engine.begin() as c:
        ncschema.add_user(c, "oc_", "nina", H)
        ncschema.set_email(c, "oc_", "nina", f"nina.n@{D}")
        ncschema.add_user(c, "oc_", "mia", H)
        ncschema.set_email(c, "oc_", "mia", f"mia.m@{D}")
        ncschema.add_group_member(c, "oc_", "mail", "mia")
    auth = _auth(db, "match = 'email'\ntrust_user_emails = true\ngroups = ['mail']")
    try:
        assert auth.lookup(f"nina.n@{D}").outcome is Outcome.UNKNOWN  # by address: refused
        assert auth.lookup(f"mia@{D}").ok  # a member, by canonical name
        assert f"nina@{D}" not in auth.accounts()
        verdict = auth.lookup(f"nina@{D}")  # by canonical name
        assert verdict.outcome is Outcome.UNKNOWN, verdict
    finally:
        auth.store.close()
