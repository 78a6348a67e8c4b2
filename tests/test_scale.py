"""The scale benchmark's generated Nextcloud (tests/support/scalegen.py) is one ncauth serves
correctly in every match mode, and the query-plan claims README's "Scale" section makes
hold: the e-mail owner query reads every e-mail row without an index, and PostgreSQL uses
the optional ``ncauth_email_lower`` index for the very statement ncauth sends, also in
the generic plan a prepared statement gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from support import dbservers, population, scalegen

from ncauth import config as config_mod
from ncauth.policy import Authenticator

USERS = 300


@pytest.fixture(scope="module", params=["mariadb", "postgresql"])
def generated(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(backend, url, url of the address-uid twin) of a generated Nextcloud of USERS users."""
    server = request.getfixturevalue("mariadb" if request.param == "mariadb" else "postgres")
    urls = []
    for address in (False, True):
        url = server.create_database(f"scale_test_{request.param}_{int(address)}")
        engine = sa.create_engine(url)
        scalegen.populate(
            engine, USERS, population.php_hash(population.P), secret=population.SECRET, address_uids=address
        )
        engine.dispose()
        urls.append(url)
    return request.param, urls[0], urls[1]


def authenticator(tmp_path: Path, url: str, match: str) -> Authenticator:
    path = tmp_path / f"{match}.toml"
    path.write_text(scalegen.config_text(url, match))
    path.chmod(0o600)
    return Authenticator(config_mod.load(str(path)))


@pytest.mark.parametrize("match", config_mod.MATCH_MODES)
def test_generated_nextcloud_logs_its_users_in(
    generated: tuple[str, str, str], match: str, tmp_path: Path
) -> None:
    _, url, url_address = generated
    auth = authenticator(tmp_path, url_address if match == "address" else url, match)
    p = population.P.encode()
    try:
        for i in (0, 42, USERS - 1):
            verdict = auth.authenticate(scalegen.login_of(i, match), p)
            assert verdict.ok, (i, verdict)
            assert verdict.user == f"user{i:06d}@{scalegen.DOMAIN}"
            assert auth.mailbox_owner(scalegen.login_of(i, match)).ok
        app = auth.authenticate(scalegen.login_of(42, match), scalegen.token_of(42).encode())
        assert app.ok and app.method == "app-password", app
        assert auth.authenticate(scalegen.login_of(42, match), b"wrong").reason == "wrong password"
        assert "disabled" in auth.authenticate(scalegen.login_of(103, match), p).reason
        assert "two-factor" in auth.authenticate(scalegen.login_of(27, match), p).reason
        assert auth.authenticate(f"nobody@{scalegen.DOMAIN}", p).outcome.value == "unknown"
        # every enabled user listed once (3 of 300 are disabled)
        assert len(auth.accounts()) == USERS - 3
    finally:
        auth.store.close()


def _owner_query(auth: Authenticator) -> tuple[str, object]:
    """The statement ncauth's store sends to find an e-mail address's owner."""
    with scalegen.recording() as sent:
        assert auth.store.uids_by_email(scalegen.email_of(42)) == [scalegen.uid_of(42)]
    assert sent, "the store sent nothing"
    return sent[-1]


def test_email_owner_query_reads_every_email_row_without_an_index(
    generated: tuple[str, str, str], tmp_path: Path
) -> None:
    """README's linear-path statement: Nextcloud's own (appid, configkey) index narrows the
    scan to the settings/email rows, all of them, since LOWER(configvalue) is in no index."""
    backend, url, _ = generated
    auth = authenticator(tmp_path, url, "email")
    statement, params = _owner_query(auth)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            plan = scalegen.explain(conn, statement, params)
    finally:
        engine.dispose()
        auth.store.close()
    text = "\n".join(plan)
    assert "prefs_app_key_ind_fl_i" in text, text
    if backend == "postgresql":
        assert f"Bitmap Index Scan on prefs_app_key_ind_fl_i (actual rows={USERS} " in text, text
    else:
        rows = int(text.split(" rows=")[1].split()[0])
        assert "type=ref" in text and rows >= USERS // 2, text


def test_postgres_uses_the_optional_email_index(postgres: dbservers.Server, tmp_path: Path) -> None:
    """With README's CREATE INDEX, the statement ncauth sends finds the owner through it,
    planned with its value and as a prepared statement's generic plan, and the verdicts
    are those without it."""
    url = postgres.create_database("scale_test_email_index")
    engine = sa.create_engine(url)
    scalegen.populate(engine, 2000, population.php_hash(population.P), secret=population.SECRET)
    auth = authenticator(tmp_path, url, "email")
    logins = [scalegen.login_of(i, "email") for i in (5, 1234)] + ["First.Last000042@Example.org"]
    try:
        before = [auth.authenticate(login, population.P.encode()) for login in logins]
        with engine.begin() as conn:
            conn.exec_driver_sql(scalegen.EMAIL_INDEX_POSTGRES.format(table="oc_preferences"))
            conn.exec_driver_sql("ANALYZE oc_preferences")
        statement, params = _owner_query(auth)
        with engine.connect() as conn:
            for generic in (False, True):
                plan = "\n".join(scalegen.explain(conn, statement, params, generic=generic))
                assert "Index Scan using ncauth_email_lower" in plan, (generic, plan)
        after = [auth.authenticate(login, population.P.encode()) for login in logins]
        assert [(v.outcome, v.user, v.reason) for v in after] == [
            (v.outcome, v.user, v.reason) for v in before
        ]
        assert all(v.ok for v in after)
    finally:
        auth.store.close()
        engine.dispose()
