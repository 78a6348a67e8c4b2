"""ncauth decides the standard population alike with Debian 12's library versions.

Debian 12 carries SQLAlchemy 1.4 and older argon2-cffi, bcrypt and cryptography than PyPI; the
.deb depends on exactly those packages (tests/test_deb.py installs it there). Here the same
versions, pinned in a venv made from /usr/bin/python3, decide the cases of the standard
population against real SQLite, MariaDB and PostgreSQL (through config.php, so that ncauth picks
psycopg2: SQLAlchemy 1.4 has no ``postgresql+psycopg`` dialect), through the store and the policy
as the front ends use them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import population
from support.dovecot_harness import DovecotError, make_dovecot_venv
from support.leakcheck import record_output
from support.population import CASES
from support.require import unavailable

ROOT = Path(__file__).resolve().parent.parent
#: Debian 12's python3-* versions of ncauth's dependencies (pyproject.toml's lower bounds)
DEBIAN12 = {
    "SQLAlchemy": "1.4.46",
    "argon2-cffi": "21.1.0",
    "bcrypt": "3.2.2",
    "PyNaCl": "1.5.0",
    "PyMySQL": "1.0.2",
    "cryptography": "38.0.4",
}

#: Every case but the many on alice's Nextcloud-default argon2id hash (64 MiB, the slow ones), of
#: which one password and one app-password login stay: each hash family, token rule and store
#: query still runs, in seconds.
QUICK_CASES = [c for c in CASES if c.login != population.A or c.id in ("argon2id", "app-password")]


@pytest.fixture(scope="module")
def debian12_venv() -> Path:
    """pip installs the checkout with exactly these versions, so pyproject.toml's lower bounds
    admit them (pip refuses a pin outside them)."""
    try:
        return make_dovecot_venv(
            ROOT,
            extra_requirements=[*(f"{name}=={v}" for name, v in DEBIAN12.items()), "psycopg2-binary"],
        )
    except (DovecotError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"no venv with Debian 12's library versions: {exc}")


def _from_config_php(url_text: str, directory: Path) -> Path:
    """A config that reads the database from Nextcloud's config.php: the URL ncauth derives must
    name psycopg2 under SQLAlchemy 1.4, which has no postgresql+psycopg dialect."""
    url = sa.engine.make_url(url_text)
    php = directory / "config.php"
    php.write_text(
        f"<?php\n$CONFIG = array (\n  'dbtype' => 'pgsql',\n  'dbhost' => '{url.host}:{url.port}',\n"
        f"  'dbname' => '{url.database}',\n  'dbuser' => '{url.username}',\n"
        f"  'dbpassword' => '{url.password or ''}',\n  'dbtableprefix' => 'oc_',\n"
        f"  'secret' => '{population.SECRET}',\n  'passwordsalt' => '{population.PASSWORD_SALT}',\n);\n"
    )
    php.chmod(0o600)
    config = directory / "ncauth.toml"
    config.write_text(
        f'[nextcloud]\nconfig_php = "{php}"\nhashing_memory_cost = 8192\nhashing_time_cost = 1\n'
        + population.STANDARD_CONFIG
    )
    config.chmod(0o600)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("standard_nextcloud", ["sqlite", "mariadb", "postgresql"], indirect=True)
def test_standard_population_with_debian12_libraries(
    standard_nextcloud, debian12_venv: Path, tmp_path: Path
) -> None:
    config = standard_nextcloud.config_path
    if standard_nextcloud.url.startswith("postgresql"):
        config = _from_config_php(standard_nextcloud.url, tmp_path)
    request = {
        "config": str(config),
        "cases": [
            {"id": c.id, "login": c.login, "password": c.password, "remote_ip": c.remote_ip}
            for c in QUICK_CASES
        ],
    }
    proc = subprocess.run(
        [str(debian12_venv / "bin" / "python"), str(ROOT / "tests" / "support" / "decide_cases.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["versions"] == DEBIAN12
    verdicts = {v["id"]: v for v in lines[1:]}
    assert sorted(verdicts) == sorted(c.id for c in QUICK_CASES)
    for case in QUICK_CASES:
        got = verdicts[case.id]
        assert got["outcome"] == case.outcome, (case.id, got)
        # the verdict of an account of another backend says only "no such user" (the trace says more)
        assert case.reason in got["reason"] or case.id == "other-backend-user", (case.id, got)
        if case.outcome == "ok":
            assert got["user"] == case.user, case.id
    assert population.P not in proc.stdout
