"""``[accounts] groups``: only members of the named Nextcloud groups have a mailbox, for a
login, a lookup and SQL mode's own query alike, on SQLite, MariaDB and PostgreSQL. Group
ids compare exactly (oc_group_user.gid), as Nextcloud's Manager::get does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support import population

from ncauth import config as config_mod
from ncauth.outcome import Outcome
from ncauth.policy import Authenticator
from ncauth.sqlgen import QueryBuilder, dialect_of

D = population.DOMAIN


def _config(db, groups: str):
    text = population.STANDARD_CONFIG.replace("[accounts]\n", f"[accounts]\ngroups = {groups}\n", 1)
    return config_mod.load(str(db.write_config(text, name="groups.toml")))


def _sql_users(db, config, login: str) -> list[str]:
    """SQL mode's password query, as Dovecot 2.3 runs it, for *login*."""
    text = QueryBuilder(config, dialect_of(db.url), "2.3").password_query()
    local, _, domain = login.partition("@")
    for var, value in (("%u", login), ("%n", local), ("%d", domain)):
        text = text.replace(var, value)
    with db.engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text(text.replace(":", "\\:")))]


@pytest.fixture
def near_miss_groups(standard_nextcloud):
    """alice is in groups whose ids differ from 'admin' only by case or a trailing space."""
    db = standard_nextcloud
    rows = [{"gid": gid, "uid": "alice"} for gid in ("Admin", "ADMIN", "admin ")]
    table = sa.Table(f"{db.prefix}group_user", sa.MetaData(), autoload_with=db.engine)
    with db.engine.begin() as conn:
        conn.execute(table.insert(), rows)
    yield db
    with db.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.uid == "alice"))


def test_only_members_log_in_and_exist(near_miss_groups) -> None:
    db = near_miss_groups
    config = _config(db, '["admin"]')  # the population puts gus, not alice, in "admin"
    auth = Authenticator(config)
    try:
        gus = auth.authenticate(f"gus@{D}", population.P.encode())
        assert gus.outcome is Outcome.OK and gus.user == f"gus@{D}"
        alice = auth.authenticate(population.A, population.P.encode())
        assert alice.outcome is Outcome.UNKNOWN and "groups" in alice.reason
        assert auth.lookup(population.A).outcome is Outcome.UNKNOWN
        assert auth.lookup(f"gus@{D}").outcome is Outcome.OK
    finally:
        auth.store.close()
    assert _sql_users(db, config, f"gus@{D}") == [f"gus@{D}"]
    assert _sql_users(db, config, population.A) == []


def test_no_groups_means_everybody(standard_nextcloud) -> None:
    config = _config(standard_nextcloud, "[]")
    auth = Authenticator(config)
    try:
        assert auth.authenticate(population.A, population.P.encode()).outcome is Outcome.OK
    finally:
        auth.store.close()
    assert _sql_users(standard_nextcloud, config, population.A) == [population.A]


@pytest.mark.parametrize("bad", ['[""]', '["mail "]', '["50%"]', '["a$b"]', '["x\\\\y"]'])
def test_group_ids_ncauth_cannot_compare_are_config_errors(standard_nextcloud, bad: str) -> None:
    with pytest.raises(config_mod.ConfigError, match="groups"):
        _config(standard_nextcloud, bad)
