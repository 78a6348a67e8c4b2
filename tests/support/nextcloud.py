"""A database holding Nextcloud's tables and the standard users, with ncauth configs for it."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from . import ncschema, population

_counter = itertools.count()


class NextcloudDB:
    """One database with Nextcloud's tables (under *prefix*) and the standard users."""

    def __init__(self, url: str, prefix: str, directory: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.directory = directory
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.config_path: Path | None = None
        ncschema.create_schema(self.engine, prefix)

    def populate(self) -> NextcloudDB:
        with self.engine.begin() as conn:
            population.populate(conn, self.prefix)
        return self

    def write_config(self, text: str = "", *, name: str = "ncauth.toml", mode: int = 0o600) -> Path:
        """An ncauth config for this database; *text* adds sections after [nextcloud]."""
        path = self.directory / name
        path.write_text(population.config_text(self.url, self.prefix) + text)
        path.chmod(mode)
        return path

    def close(self) -> None:
        self.engine.dispose()


def database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of *kind*: a file for SQLite, a new database on the server
    otherwise (the ``mariadb`` or ``postgres`` fixture starts it)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'nextcloud.db'}"
    server = request.getfixturevalue("mariadb" if kind == "mariadb" else "postgres")
    return server.create_database(f"nc_{os.getpid()}_{next(_counter)}")
