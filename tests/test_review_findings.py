"""Regression tests from a review (branch review): each pins a bug found on main."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ncschema, population
from support.nextcloud import NextcloudDB, database_url

from ncauth import config as config_mod
from ncauth.outcome import Outcome
from ncauth.policy import Authenticator
from ncauth.sqlgen import QueryBuilder, dialect_of

D = population.DOMAIN
H = population.HASH["argon2id-tuned"]
EMAIL = "match = 'email'\ntrust_user_emails = true"


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NextcloudDB]:
    d = NextcloudDB(database_url(request.param, request, tmp_path), "oc_", tmp_path)
    yield d
    d.close()


def _auth(db: NextcloudDB, lines: str) -> Authenticator:
    text = population.STANDARD_CONFIG.replace("[accounts]\n", f"[accounts]\n{lines}\n", 1)
    return Authenticator(config_mod.load(str(db.write_config(text, name="review.toml"))))


def test_email_mode_refuses_a_uid_lower_another_user_has(db: NextcloudDB) -> None:
    """match = "local-part" refuses rows that share uid_lower; match = "email" hands eve
    alice's mailbox name (and home) when eve's row carries alice's uid_lower."""
    with db.engine.begin() as c:
        for uid in ("alice", "eve"):
            ncschema.add_user(c, "oc_", uid, H)
            ncschema.set_email(c, "oc_", uid, f"{uid}@{D}")
        c.execute(sa.text("UPDATE oc_users SET uid_lower = 'alice' WHERE uid = 'eve'"))
    auth = _auth(db, EMAIL)
    try:
        eve = auth.authenticate(f"eve@{D}", population.P.encode())
        assert eve.user != f"alice@{D}", eve
        assert auth.lookup(f"eve@{D}").user != f"alice@{D}"
    finally:
        auth.store.close()


def test_email_mode_lists_only_names_a_lookup_finds(db: NextcloudDB) -> None:
    """accounts() lists 'Zed@…' for a row whose uid_lower is not lower case, but a lookup
    of that name lower-cases it and finds nobody."""
    with db.engine.begin() as c:
        ncschema.add_user(c, "oc_", "zed", H)
        ncschema.set_email(c, "oc_", "zed", f"z@{D}")
        c.execute(sa.text("UPDATE oc_users SET uid_lower = 'Zed' WHERE uid = 'zed'"))
    auth = _auth(db, EMAIL)
    try:
        for name in auth.accounts():
            verdict = auth.lookup(name)
            assert verdict.ok and verdict.user == name, (name, verdict)
    finally:
        auth.store.close()


def test_sql_mode_two_factor_excluded_groups_compared_exactly(db: NextcloudDB) -> None:
    """MariaDB's PAD SPACE collation makes group 'staff ' count as the excluded group
    'staff' in SQL mode's query: a 2FA-enforced user logs in with the login password."""
    with db.engine.begin() as c:
        ncschema.add_user(c, "oc_", "bob", H)
        ncschema.add_group_member(c, "oc_", "staff ", "bob")
    auth = _auth(db, "two_factor_enforced = true\ntwo_factor_enforced_excluded_groups = ['staff']")
    try:
        assert auth.authenticate(f"bob@{D}", population.P.encode()).outcome is Outcome.REFUSED
        text = QueryBuilder(auth.config, dialect_of(db.url), "2.3").password_query()
        for var, value in (("%u", f"bob@{D}"), ("%n", "bob"), ("%d", D)):
            text = text.replace(var, value)
        with db.engine.connect() as conn:
            assert conn.execute(sa.text(text.replace(":", "\\:"))).all() == []
    finally:
        auth.store.close()
