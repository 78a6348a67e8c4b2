"""The generated SQL passdb query, run on each database the way Dovecot runs it: the same
logins find the same accounts under the same canonical names as the Python path.
(tests/test_dovecot.py proves the whole path through a real Dovecot; this pins what
Dovecot's own username checks would hide there, such as padded logins.)"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support import population

from ncauth import config as config_mod
from ncauth.sqlgen import QueryBuilder, dialect_of

D = population.DOMAIN


def _query(db, login: str) -> list[tuple]:
    """password_query with Dovecot 2.3's %u, %n, %d filled in (quotes doubled: no test
    login carries one) and run on *db*."""
    config = config_mod.load(str(db.config_path))
    text = QueryBuilder(config, dialect_of(db.url), "2.3").password_query()
    local, _, domain = login.partition("@")
    for var, value in (("%u", login), ("%n", local), ("%d", domain)):
        text = text.replace(var, value.replace("'", "''"))
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(text.replace(":", "\\:")))]


@pytest.mark.parametrize(
    "login", [f"alice @{D}", f"alice@{D} ", f"alice  @{D}", f"al\u00efce@{D}", f"alice@{D}\t", f"dave @{D}"]
)
def test_padded_or_accented_logins_find_nobody(standard_nextcloud, login: str) -> None:
    """MySQL/MariaDB collations ignore trailing spaces (and accents in _ci ones): the
    query compares byte for byte, so these are nobody, as in the Python path."""
    assert _query(standard_nextcloud, login) == []


def test_canonical_name_is_the_stored_uid_lower(standard_nextcloud) -> None:
    rows = _query(standard_nextcloud, f"ALICE@{D.upper()}")
    assert len(rows) == 1 and rows[0][0] == f"alice@{D}"
    assert _query(standard_nextcloud, f"bob@evil.com@{D}") == []


def test_unsafe_uid_lower_is_nobodys_mailbox(standard_nextcloud) -> None:
    """A row whose uid_lower holds a backslash or a control character is refused by the
    query as by ncauth.names (Dovecot would otherwise get it as the user name)."""
    db = standard_nextcloud
    with db.engine.begin() as conn:
        for uid in ("back\\slash", "ctl\x01x", "tab\tx"):
            conn.execute(
                sa.text("INSERT INTO oc_users (uid, uid_lower, password) VALUES (:u, :u, :p)"),
                {"u": uid, "p": population.HASH["argon2id-tuned"]},
            )
    try:
        for uid in ("back\\slash", "ctl\x01x", "tab\tx"):
            assert _query(db, f"{uid}@{D}") == [], uid
    finally:
        with db.engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM oc_users WHERE uid IN ('back\\slash', :a, :b)"),
                {"a": "ctl\x01x", "b": "tab\tx"},
            )
