"""Regression tests from a fifth review (branch review5), an outsider's attack on the login
path: each pins a way a login reached the wrong database, or an internal error became
"wrong password" (exit 1) instead of a temporary failure (111), through real parts."""

from __future__ import annotations

import os
import pwd
import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import dbservers, population
from support.checkpassword import checkpassword, expected_reply, request
from support.nextcloud import NextcloudDB
from support.population import A, P

from ncauth import oneshot
from ncauth.config import NextcloudSection
from ncauth.store import _connect_args, make_engine

SECTION = NextcloudSection(database_urls=("sqlite:////unused.db",), connect_timeout=3, query_timeout=4.5)


# --- the one-shot store's reading of a URL -----------------------------------------------


def _sqlalchemy_connects(url: str) -> tuple[list[object], dict[str, object]]:
    engine = make_engine(url, SECTION)
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.update(_connect_args(engine.url, SECTION))
    return list(args), kwargs


@pytest.mark.parametrize(
    "url",
    [
        # SQLAlchemy's URL pattern reads the query with '.', which stops at a line break:
        # it connects to /run/mysqld/mysqld.sock, the one-shot store read "…sock\n…"
        "mysql+pymysql://nc:pw@db/nc?unix_socket=/run/mysqld/mysqld.sock\nx",
        # SQLAlchemy: no query at all (TCP to host db); one-shot: a socket of its own choosing
        "mysql+pymysql://nc:pw@db/nc?\n&unix_socket=/tmp/other.sock",
        "mysql+pymysql://nc:pw@db/nc?charset=utf8mb4\n&unix_socket=/tmp/other.sock",
    ],
)
def test_a_line_break_in_the_url_query_is_left_to_sqlalchemy(url: str) -> None:
    """SQLAlchemy's ``_parse_url`` matches the query with ``(?P<query>.*)`` and
    ``re.match``: the query ends at the first line break and the rest of the URL is
    dropped. The one-shot store read up to the end, so checkpassword connected to another
    server (another ``unix_socket``) than the daemon, ``ncauth verify`` and ``doctor``.
    A TOML ``database_url`` can carry a line break (``"\\n"``)."""
    expected = _sqlalchemy_connects(url)
    t = oneshot.target(url, SECTION._replace(database_urls=(url,)))
    assert t is None or (t.prepare(), t.kwargs) == expected, (t and t.kwargs, expected)


# --- a collation error that is not the login's ------------------------------------------


def _convert(db: NextcloudDB, table: str, collation: str) -> None:
    charset = collation.split("_")[0]
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(f"ALTER TABLE oc_{table} CONVERT TO CHARACTER SET {charset} COLLATE {collation}")
        )


@pytest.fixture
def mixed_collations(mariadb: dbservers.Server, tmp_path: Path) -> NextcloudDB:
    """The standard population on MariaDB, with ``oc_users`` and ``oc_preferences``
    converted to two different case-insensitive collations (tables converted one by one,
    by two different guides' ``ALTER TABLE … CONVERT TO``)."""
    url = mariadb.create_database(f"review5_collation_{os.getpid()}_{time.monotonic_ns() % 10**9}")
    db = NextcloudDB(url, "oc_", tmp_path).populate()
    _convert(db, "users", "utf8mb4_unicode_ci")
    _convert(db, "preferences", "utf8mb4_general_ci")
    yield db
    db.close()


def test_a_collation_mix_between_tables_is_an_outage_not_an_unknown_user(
    mixed_collations: NextcloudDB,
) -> None:
    """MariaDB answers error 1267 ("Illegal mix of collations") both for a login it cannot
    compare (a 4-byte character against a utf8mb3 column: the login is nobody's) and for two
    columns of ncauth's own join that it cannot compare with each other. The second is the
    database's state, not the login's: every login was "unknown user", exit 1, and mail
    clients threw the saved password away. Only a mix that involves the bound value
    (``COERCIBLE``) matches nobody; any other is a temporary failure."""
    config = mixed_collations.write_config(population.STANDARD_CONFIG)
    r = checkpassword(config, request(A, P))
    assert r.code == 111, r.stderr
    assert "Illegal mix of collations" in r.stderr
    # the same through SQLAlchemy's store (ncauth verify, the daemon)
    from ncauth import config as config_mod
    from ncauth.outcome import Outcome
    from ncauth.policy import Authenticator

    auth = Authenticator(config_mod.load(str(config)))
    try:
        assert auth.authenticate(A, P.encode()).outcome is Outcome.TEMPFAIL
        assert auth.lookup(A).outcome is Outcome.TEMPFAIL
    finally:
        auth.store.close()
    # and the login that is the value's fault is still nobody's (tests/test_identity.py has
    # the utf8mb3 case): with the join repaired, alice logs in again
    _convert(mixed_collations, "preferences", "utf8mb4_unicode_ci")
    r = checkpassword(config, request(A, P))
    assert (r.code, r.reply) == (0, expected_reply(A)), r.stderr
    _convert(mixed_collations, "users", "utf8mb3_unicode_ci")
    r = checkpassword(config, request(f"p\U0001f511@{population.DOMAIN}", P))
    assert r.code == 1 and "no such Nextcloud user" in r.stderr, r.stderr


# --- doctor: who could answer every login from a socket of their own ----------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_doctor_names_an_owner_who_may_chmod_and_a_symlinked_directory(tmp_path: Path) -> None:
    """doctor warned only about directories whose mode bits let others write, and walked
    the socket's path as written. But an owner may chmod any directory of theirs (0555
    today, 0755 tomorrow) and remove entries of a sticky one; and a symlinked directory
    puts the socket under directories the walk never saw. A user owning any of them could
    put a socket of their own in place and answer every login."""
    from ncauth import doctor

    nobody = pwd.getpwnam("nobody").pw_uid
    tmp_path.chmod(0o755)

    def directory(path: Path, owner: int, mode: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, owner, 0)
        path.chmod(mode)
        return path

    def warnings(sock: Path) -> list[str]:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(sock))
            return [
                f.text for f in doctor._socket_directories(str(sock), os.lstat(sock)) if f.level == "WARN"
            ]

    safe = directory(tmp_path / "safe", 0, 0o755)
    assert warnings(safe / "auth.sock") == []
    # the socket's own directory, owned by another user, not writable by its mode (yet)
    owned = directory(tmp_path / "owned", nobody, 0o555)
    assert "writable by user nobody (its owner)" in " ".join(warnings(owned / "auth.sock"))
    # a directory above, owned by another user, with the sticky bit and no write bit
    above = directory(tmp_path / "above", 0, 0o755)
    run = directory(above / "run", 0, 0o755)
    os.chown(above, nobody, 0)
    above.chmod(0o1555)
    assert f"{above} (1555) is writable by user nobody" in " ".join(warnings(run / "auth.sock"))
    # a root-owned directory reached through a symlink from under a user's directory
    home = directory(tmp_path / "home", nobody, 0o755)
    real = directory(home / "real", 0, 0o755)
    links = directory(tmp_path / "run", 0, 0o755)
    (links / "ncauth").symlink_to(real)
    assert f"{home} (0755) is writable by user nobody" in " ".join(warnings(links / "ncauth" / "auth.sock"))
