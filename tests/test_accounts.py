"""The account list (``Authenticator.accounts``, ``ncauth users``): every enabled account
the configuration serves, under the canonical name a login or lookup of it gives, and
nothing a lookup would not find, on SQLite, MariaDB and PostgreSQL, in each match mode."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import leakcheck, population

from ncauth import config as config_mod
from ncauth.policy import Authenticator

D = population.DOMAIN
ACCOUNTS = {  # match mode: [accounts] lines, the names expected
    "local-part": ("", {f"{u.lower()}@{D}" for u in population.USERS if "@" not in u and u != "dave"}),
    "email": ("match = 'email'\ntrust_user_emails = true", {f"emma.stone@{D}"}),
    "address": ("match = 'address'", set()),  # no uid of the population is an address in a served domain
}


def _auth(db, mode: str, extra: str = "") -> Authenticator:
    lines = ACCOUNTS[mode][0] + extra
    text = population.STANDARD_CONFIG.replace("[accounts]\n", f"[accounts]\n{lines}\n", 1)
    return Authenticator(config_mod.load(str(db.write_config(text, name=f"{mode}.toml"))))


@pytest.mark.parametrize("mode", sorted(ACCOUNTS))
def test_listing_is_what_lookups_find(standard_nextcloud, mode: str) -> None:
    auth = _auth(standard_nextcloud, mode)
    try:
        listed = auth.accounts()
        assert set(listed) == ACCOUNTS[mode][1] and listed == sorted(listed)
        for name in listed:  # each one a lookup finds, enabled, under that very name
            verdict = auth.lookup(name)
            assert verdict.ok and verdict.user == name and not verdict.disabled, (name, verdict)
        # and every name a lookup finds enabled is listed
        for uid in population.USERS:
            for login in (f"{uid}@{D}", uid):
                verdict = auth.lookup(login)
                if verdict.ok and not verdict.disabled:
                    assert verdict.user in listed, (login, verdict)
    finally:
        auth.store.close()


def test_address_uids_list_when_their_domain_is_served(standard_nextcloud) -> None:
    """match = "address": a uid that is an address is listed when its domain is served."""
    auth = _auth(standard_nextcloud, "address")
    text = population.STANDARD_CONFIG.replace("[accounts]\n", "[accounts]\nmatch = 'address'\n", 1).replace(
        f'domains = ["{D}"]', f'domains = ["{D}", "evil.com"]'
    )
    auth = Authenticator(config_mod.load(str(standard_nextcloud.write_config(text, name="addr.toml"))))
    try:
        assert auth.accounts() == ["bob@evil.com"]
    finally:
        auth.store.close()


def test_groups_limit_the_listing(standard_nextcloud) -> None:
    auth = _auth(standard_nextcloud, "local-part", "groups = ['admin']")
    try:
        assert auth.accounts() == [f"gus@{D}"]
    finally:
        auth.store.close()


def test_ncauth_users_command(standard_nextcloud, tmp_path) -> None:
    def run(config: str) -> subprocess.CompletedProcess[str]:
        return leakcheck.run([sys.executable, "-m", "ncauth", "users", "--config", config])

    ok = run(str(standard_nextcloud.config_path))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == sorted(ACCOUNTS["local-part"][1])
    down = tmp_path / "down.toml"
    down.write_text(
        population.config_text("mysql+pymysql://nobody:x@127.0.0.1:9/nextcloud?connect_timeout=1", "oc_")
        + population.STANDARD_CONFIG
    )
    down.chmod(0o600)
    failed = run(str(down))
    assert failed.returncode == 75 and "Traceback" not in failed.stderr, failed.stderr


def test_postfix_maps_find_addresses_only_by_email(standard_nextcloud) -> None:
    """With match = "email", Dovecot's lookups also find Emma by her canonical name, but
    Postfix's maps do not: with trust_user_emails another user could claim that name as
    her own address and would then receive Emma's mail (review finding)."""
    auth = _auth(standard_nextcloud, "email")
    try:
        assert auth.lookup(f"emma.stone@{D}").ok
        assert not auth.mailbox_owner(f"emma.stone@{D}").ok
        owner = auth.mailbox_owner(f"emma@{D}")
        assert owner.ok and owner.user == f"emma.stone@{D}"
    finally:
        auth.store.close()
