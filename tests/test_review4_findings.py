"""Regression tests from a fourth review (branch review4): each pins a bug found in the
day's performance work on checkpassword's login path (the one-shot store, ``--socket``),
through real parts where the bug shows in them."""

from __future__ import annotations

import pytest

from ncauth import oneshot
from ncauth.config import NextcloudSection

SECTION = NextcloudSection(database_urls=("sqlite:////unused.db",))


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://nc:pw@db/next%63loud",
        "mysql+pymysql://nc:pw@db/nc%5Fold",
        "sqlite:////var/lib/nextcloud/data%2Fold/owncloud.db",
        "sqlite+pysqlite:///relative/nc%20data/nc.db",
        "sqlite:////srv/nc%00/owncloud.db",
    ],
)
def test_a_percent_in_the_database_name_is_left_to_sqlalchemy(url: str) -> None:
    """oneshot unquoted the database part of the URL as SQLAlchemy 2.1 does, but Debian's
    SQLAlchemy (1.4 on Debian 12, 2.0 on Debian 13: the versions the .deb runs with) reads
    it literally: ``/nc%5Fold`` was database ``nc_old`` for checkpassword and ``nc%5Fold``
    for the daemon, ``ncauth verify`` and ``ncauth doctor``, so a login could be decided
    against another database than every tool showed. Such a URL now goes to SQLAlchemy's
    store, which reads it as the version installed reads it everywhere else."""
    assert oneshot.target(url, SECTION) is None
    assert oneshot.unsupported(SECTION._replace(database_urls=(url,)))
