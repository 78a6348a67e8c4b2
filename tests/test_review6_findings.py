"""Regression tests from a sixth review (branch review6), an outsider's attack on the
one-shot store's PostgreSQL path (psycopg without SQLAlchemy): each pins a way the
one-shot checkpassword could reach another database than the daemon, or end an internal
error as "wrong password" (exit 1) instead of a temporary failure (111)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import population
from support.checkpassword import checkpassword, request

from ncauth import oneshot
from ncauth.config import NextcloudSection
from ncauth.store import _connect_args, make_engine

SECTION = NextcloudSection(database_urls=("sqlite:////unused.db",), connect_timeout=3, query_timeout=4.5)


def _sqlalchemy_connects(url: str) -> tuple[list[object], dict[str, object]]:
    engine = make_engine(url, SECTION)
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.update(_connect_args(engine.url, SECTION))
    kwargs.pop("context", None)  # psycopg's adapters, copied (tests/test_oneshot.py checks them)
    return list(args), kwargs


# --- an '@' in the URL's query -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        # SQLAlchemy's pattern reads user info up to the first '@' anywhere in the URL
        # (its password is [^@]*, crossing '/' and '?'): with no password before the host,
        # "host:port/db?...@x" is user "host", password "port/db?..." and host "x"
        "postgresql+psycopg://nextcloud@db.example.org:5432/nextcloud?application_name=ncauth@mail",
        "postgresql+psycopg://db.example.org:5432/nextcloud?sslrootcert=/etc/ssl/ca@2026.pem",
        "postgresql+psycopg://db:5432/nc?sslmode=require&host=/run/postgresql@main",
        "mysql+pymysql://nextcloud@db.example.org:3306/nextcloud?unix_socket=/run/mysqld@1/mysqld.sock",
    ],
)
def test_an_at_sign_in_the_query_is_read_as_sqlalchemy_reads_it_or_left_to_it(url: str) -> None:
    section = SECTION._replace(database_urls=(url,))
    t = oneshot.target(url, section)
    if t is not None:
        assert (t.prepare(), t.kwargs) == _sqlalchemy_connects(url)


# --- a psycopg that is installed but cannot load ------------------------------------------


def test_a_psycopg_that_cannot_load_is_a_config_error(tmp_path: Path) -> None:
    """The one-shot store takes a PostgreSQL URL where psycopg is installed; psycopg that
    then cannot load (here: told to use its C implementation, which is not installed) is
    a config error naming the module, as a missing one is in SQLAlchemy's store, not an
    "internal error" (exit 111 either way)."""
    config = tmp_path / "ncauth.toml"
    config.write_text(
        population.config_text("postgresql+psycopg://nc:secret@127.0.0.1:1/nc", "oc_")
        + population.STANDARD_CONFIG
    )
    config.chmod(0o600)
    r = checkpassword(config, request(population.A, population.P), {"PSYCOPG_IMPL": "c"})
    assert r.code == 111, r.stderr
    assert "config error: [nextcloud] database_url 'postgresql+psycopg://nc:***@127.0.0.1:1/nc': " in r.stderr
    assert "its driver module 'psycopg' cannot be imported (" in r.stderr and "secret" not in r.stderr
