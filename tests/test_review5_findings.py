"""Regression tests from a fifth review (branch review5), an outsider's attack on the login
path: each pins a way a login reached the wrong database, or an internal error became
"wrong password" (exit 1) instead of a temporary failure (111), through real parts."""

from __future__ import annotations

import pytest

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
