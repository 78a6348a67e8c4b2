"""A real Dovecot enforces the quota each user has in Nextcloud: ``{quota_bytes}`` in the
``[userdb]`` field of the version (2.3 ``quota_rule = "*:bytes={quota_bytes}"``, 2.4
``quota_storage_size = "{quota_bytes}"``), the quota plugin from ``ncauth dovecot-config``,
and ``doveadm quota get`` / IMAP GETQUOTAROOT show Nextcloud's numbers."""

from __future__ import annotations

import imaplib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dovecot_e2e, ncschema, population
from support.dovecot24 import dovecot24_available
from support.leakcheck import record_output
from support.nextcloud import NextcloudDB
from support.require import unavailable

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

GiB = 1024**3
#: uid: oc_preferences files/quota (None: no row); the files app's default_quota is '1 GB'
QUOTAS = {"Alice": "2 GB", "bob": "default", "ivy": "none", "dig": "0 B", "uni": None}
#: login: the STORAGE limit doveadm prints (KiB), None for no limit
EXPECTED_KIB = {
    "alice@example.org": 2 * 1024 * 1024,
    "bob@example.org": 1024 * 1024,
    "ivy@example.org": None,
    # Nextcloud's zero is one byte (a 0 would be no limit to Dovecot); doveadm rounds it up
    "dig@example.org": 1,
    "uni@example.org": 1024 * 1024,
}
#: mode, Dovecot version, the userdb line
MATRIX = [
    ("checkpassword", "2.3", 'quota_rule = "*:bytes={quota_bytes}"\n'),
    ("lua", "2.3", 'quota_rule = "*:bytes={quota_bytes}"\n'),
    ("lua", "2.4", 'quota_storage_size = "{quota_bytes}"\n'),
]


@pytest.fixture(scope="module")
def quota_db(mariadb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NextcloudDB]:
    db = NextcloudDB(mariadb.create_database("nc_quota_e2e"), "oc_", tmp_path_factory.mktemp("q")).populate()
    with db.engine.begin() as conn:
        for uid, value in QUOTAS.items():
            if value is not None:
                ncschema.set_preference(conn, db.prefix, uid, "files", "quota", value)
        ncschema.set_appconfig(conn, db.prefix, "files", "default_quota", "1 GB")
    yield db
    db.close()


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{m}+daemon-{v}" for m, v, _ in MATRIX])
def dovecot(
    request: pytest.FixtureRequest, mariadb, quota_db: NextcloudDB, dovecot_venv: Path
) -> Iterator[dovecot_e2e.E2E]:
    mode, version, line = request.param
    if version == "2.4" and (reason := dovecot24_available()):
        unavailable(f"no Dovecot 2.4 chroot: {reason}")
    d, server = dovecot_e2e.start(
        mode, version, True, mariadb, quota_db.url, quota_db.prefix, dovecot_venv, userdb_extra=line
    )
    try:
        yield d
    finally:
        d.stop()
        record_output(d.log_text())
        if server is not None:
            assert server.stop() == 0
        shutil.rmtree(d.root, ignore_errors=True)


def _storage_limit(out: str) -> int | None:
    """The STORAGE limit of ``doveadm quota get``: 'Quota name  Type  Value  Limit  %'."""
    row = next(line for line in out.splitlines() if re.search(r"\bSTORAGE\b", line))
    limit = row.split("STORAGE", 1)[1].split()[1]
    return None if limit == "-" else int(limit)


@pytest.mark.parametrize("login", sorted(EXPECTED_KIB))
def test_doveadm_quota_get_shows_the_nextcloud_quota(dovecot, login: str) -> None:
    code, out = dovecot.quota_get(login)
    assert code == 0, out
    assert "User quota" in out, out
    assert _storage_limit(out) == EXPECTED_KIB[login], out


def test_imap_clients_see_it(dovecot) -> None:
    """imap_quota: GETQUOTAROOT answers with the limit from Nextcloud."""
    imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=20)
    try:
        imap.login(population.A, population.P)
        typ, data = imap.getquotaroot("INBOX")
    finally:
        imap.logout()
    text = " ".join(x.decode() if isinstance(x, bytes) else str(x) for item in data for x in item)
    assert typ == "OK" and "(STORAGE 0 2097152)" in text, data
