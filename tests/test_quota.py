"""Nextcloud's quota as ncauth reads it (ncauth/quota.py, store.quota_settings).

The size vectors state what Nextcloud's ``OCP\\Util::computerFileSize`` (lib/public/Util.php;
``OC_Helper::computerFileSize`` before NC 31) returns; ``test_vectors_match_php`` checks
every one against the PHP interpreter, applying the same rule there with PHP's own
primitives (is_numeric, the float cast, preg_match, round, the float-to-string cast), so a
vector cannot drift from PHP's semantics unnoticed. The store tests run on SQLite, MariaDB
and PostgreSQL with Nextcloud's own table layout (tests/ncschema.py).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ncschema, population
from support.nextcloud import NextcloudDB, database_url
from support.require import unavailable

from ncauth import cli, dovecot, sqlgen
from ncauth import config as config_mod
from ncauth.config import Config
from ncauth.errors import ConfigError
from ncauth.oneshot import OneShotStore, store_for
from ncauth.outcome import Outcome
from ncauth.policy import Authenticator
from ncauth.queries import Reader
from ncauth.quota import (
    QuotaSettings,
    computer_file_size,
    dovecot23_quota_rule,
    dovecot24_quota_storage_size,
    dovecot_bytes,
    effective_quota,
    quota_bytes,
)
from ncauth.store import Store, Tables

GiB = 1024**3

#: (text, what computerFileSize returns: int, float, or None for false). Verified against
#: PHP 8.2 by test_vectors_match_php.
VECTORS: list[tuple[str, int | float | None]] = [
    # what Nextcloud writes (User::setQuota stores humanFileSize's form)
    ("1 GB", GiB),
    ("5 GB", 5 * GiB),
    ("1.5 GB", 1610612736),
    ("512 MB", 512 * 1024**2),
    ("1 TB", 1024**4),
    ("2 tb", 2 * 1024**4),
    ("0 B", 0),
    ("1 KB", 1024),
    # case and spacing
    ("1 Gb", GiB),
    ("1gb", GiB),
    ("7k", 7168),
    (" 12 kb", 12288),
    ("\t7 k", 7168),
    ("\n7 k", 7168),
    ("\x0b7 k", 7168),
    ("\x0c7 k", 7168),
    ("\r7 k", 7168),
    ("12 kb\n", 12288),  # PCRE's $ matches before one final newline
    ("12 kb\n\n", None),
    ("12 kb ", None),  # a trailing space ends the string with no unit
    ("7 k ", None),
    # a plain number is bytes, as it is (no rounding): int or float
    ("123456789012345", 123456789012345),
    ("00012", 12),
    (" 12", 12),
    ("12 ", 12),
    ("12\n", 12),
    ("1.5", 1.5),
    ("0.1", 0.1),
    ("1e3", 1000.0),
    ("-5", -5),
    ("0", 0),
    ("-0", 0),
    ("9007199254740993", 9007199254740993),
    ("9223372036854775807", 9223372036854775807),
    ("9223372036854775808", 9.223372036854776e18),
    ("1e400", math.inf),
    # decimals and exponents before a unit
    (".5 kb", 512),
    ("5. kb", 5120),
    ("1.e3 k", 1024000),
    ("1e3 kb", 1024000),
    ("1e+2 m", 104857600),
    (".e3 k", 0),
    ("3.999999999999999 mb", 4194304),
    ("1.99999 KB", 2048),
    ("0.0005 kb", 1),
    # round() half away from zero
    ("0.4 b", 0),
    ("0.5 b", 1),
    ("1.5 b", 2),
    ("2.5 b", 3),
    ("-0.5 b", -1),
    ("-1.5 b", -2),
    ("999999999999999.5 b", 1e15),
    # PHP's float-to-string cast keeps 14 significant digits
    ("100 TB", 109951162777600.0),
    ("1 PB", 1125899906842600.0),
    ("1.5 PB", 1688849860263900.0),
    ("5 P", 5629499534213100.0),
    ("1e15 b", 1e15),
    ("4503599627370495.5 b", 4503599627370500.0),
    ("1.0E+25", 1e25),
    ("1e25 b", 1e25),
    # signs
    ("-5 MB", -5242880),
    ("+5 MB", 5242880),
    ("- 5 MB", 0),
    ("-0.0 kb", 0),
    # the unit is whatever the string ends with
    ("1 xb", 1),
    ("5 kkb", 5120),
    ("1 m b", 1),
    ("1 bb", 1),
    ("1 gbp", 1125899906842600.0),
    ("gb", 0),
    ("default", 0),  # ends in 't': 0 TB
    ("Default", 0),
    ("5 KiB", 5),  # ends in 'b'
    ("5 gib", 5),
    ("1,5 GB", GiB),  # the float cast stops at ','
    ("1_000 k", 1024),
    ("0x1A kb", 0),
    ("NaN kb", 0),
    ("inf kb", 0),
    ("\u0661 kb", 0),  # ARABIC-INDIC DIGIT ONE is no digit to PHP
    ("\u00a07 k", 0),  # nor is NO-BREAK SPACE whitespace
    ("\x007 k", 0),
    ("1e-400 kb", 0),
    # false
    ("none", None),
    ("None", None),
    ("unlimited", None),
    ("", None),
    (" ", None),
    ("0x1A", None),
    ("INF", None),
    ("1e", None),
    ("1e+", None),
    ("1 mb.", None),
    ("1e400 kb", None),  # PHP throws a TypeError (0 + "INF"): no quota is read
    ("-1e400 b", None),
]


@pytest.mark.parametrize(("text", "expected"), VECTORS, ids=[repr(t) for t, _ in VECTORS])
def test_computer_file_size(text: str, expected: int | float | None) -> None:
    got = computer_file_size(text)
    assert got == expected
    assert type(got) is type(expected)


# The rule of OCP\Util::computerFileSize, written here with PHP's primitives (not copied):
# lower-case; a numeric string is 0 + itself; otherwise the float cast times the unit the
# string ends with, round(), and 0 + the float cast back to a string; false without a unit.
_PHP_RULE = r"""
$units = ['b' => 1, 'k' => 1024, 'kb' => 1024, 'm' => 1024 ** 2, 'mb' => 1024 ** 2,
  'g' => 1024 ** 3, 'gb' => 1024 ** 3, 't' => 1024 ** 4, 'tb' => 1024 ** 4, 'p' => 1024 ** 5, 'pb' => 1024 ** 5];
$out = [];
foreach (json_decode(stream_get_contents(STDIN)) as $text) {
  $s = strtolower($text);
  if (is_numeric($s)) {
    $r = 0 + $s;
  } elseif (preg_match('#([kmgtp]?b?)$#si', $s, $m) && isset($units[$m[1]])) {
    try { $r = 0 + (string)round((float)$s * $units[$m[1]]); } catch (\TypeError $e) { $r = false; }
  } else {
    $r = false;
  }
  $out[] = [gettype($r), is_float($r) ? var_export($r, true) : $r];
}
echo json_encode($out);
"""


def test_vectors_match_php() -> None:
    php = shutil.which("php")
    if php is None:
        unavailable("no php CLI (Debian: php-cli)")
    texts = [t for t, _ in VECTORS]
    run = subprocess.run(
        [str(php), "-d", "precision=14", "-r", _PHP_RULE],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
    )
    for (text, expected), (kind, value) in zip(VECTORS, json.loads(run.stdout), strict=True):
        if expected is None:
            assert kind == "boolean" and value is False, text
        elif isinstance(expected, int):
            assert (kind, value) == ("integer", expected), text
        else:
            assert kind == "double", text
            assert float(value.replace("INF", "inf")) == expected, text


def test_round_follows_php_not_python() -> None:
    """Python's round() is half-to-even; PHP's is half away from zero."""
    assert round(2.5) == 2
    assert computer_file_size("2.5 b") == 3
    assert computer_file_size("0.5 b") == 1


# --- getQuota() / getQuotaBytes() --------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "quota", "limit"),
    [
        (QuotaSettings(user_quota="2 GB"), "2 GB", 2 * GiB),
        (QuotaSettings(user_quota="2 GB", default_quota="1 GB"), "2 GB", 2 * GiB),
        # no row, or 'default': the app default, else 'none'
        (QuotaSettings(), "none", None),
        (QuotaSettings(default_quota="1 GB"), "1 GB", GiB),
        (QuotaSettings(user_quota="default", default_quota="1 GB"), "1 GB", GiB),
        (QuotaSettings(user_quota="default"), "none", None),
        (QuotaSettings(user_quota="none", default_quota="1 GB"), "none", None),
        # 'default' and 'none' are compared exactly: other spellings are sizes
        (QuotaSettings(user_quota="Default", default_quota="1 GB"), "Default", 0),
        (QuotaSettings(user_quota="None", default_quota="1 GB"), "None", None),  # unparsable
        (QuotaSettings(user_quota="default ", default_quota="1 GB"), "default ", None),
        # unparsable (SPACE_UNKNOWN) and negative values: the storage wrapper enforces nothing
        (QuotaSettings(user_quota="lots"), "lots", None),
        (QuotaSettings(user_quota=""), "", None),
        (QuotaSettings(user_quota="-1"), "-1", None),
        (QuotaSettings(user_quota="-5 MB"), "-5 MB", None),
        (QuotaSettings(default_quota="garbage"), "garbage", None),
        # zero is a limit: no space at all
        (QuotaSettings(user_quota="0 B"), "0 B", 0),
        (QuotaSettings(user_quota="0"), "0", 0),
        # fractions of a byte are cut off; huge values are no limit
        (QuotaSettings(user_quota="1.9"), "1.9", 1),
        (QuotaSettings(user_quota="1 PB"), "1 PB", 1125899906842600),
        (QuotaSettings(user_quota="1e400"), "1e400", None),
        (QuotaSettings(user_quota="9223372036854775807"), "9223372036854775807", 2**63 - 1),
        (QuotaSettings(user_quota="9223372036854775808"), "9223372036854775808", None),
        (QuotaSettings(user_quota="1e400 kb"), "1e400 kb", None),
        # max_quota only bounds what the provisioning API lets an admin set
        (QuotaSettings(user_quota="5 TB"), "5 TB", 5 * 1024**4),
    ],
)
def test_resolution(settings: QuotaSettings, quota: str, limit: int | None) -> None:
    assert effective_quota(settings) == quota
    assert quota_bytes(settings) == limit


@pytest.mark.parametrize(
    ("settings", "quota"),
    [
        # allow_unlimited_quota = '0' and no default_quota: the first usable preset
        (QuotaSettings(allow_unlimited_quota="0"), "1 GB"),
        (QuotaSettings(allow_unlimited_quota="0", quota_preset="none, default, 0, , 3 GB, 7 GB"), "3 GB"),
        (QuotaSettings(allow_unlimited_quota="0", quota_preset=" \t250 MB\n,1 GB"), "250 MB"),
        (QuotaSettings(allow_unlimited_quota="0", quota_preset="none,default"), "none"),
        (QuotaSettings(allow_unlimited_quota="0", quota_preset=""), "none"),
        (QuotaSettings(user_quota="default", allow_unlimited_quota="0"), "1 GB"),
        # a stored default_quota wins, even 'none'
        (QuotaSettings(allow_unlimited_quota="0", default_quota="none"), "none"),
        (QuotaSettings(allow_unlimited_quota="0", default_quota="20 GB"), "20 GB"),
        # anything but '1' forbids unlimited; a user's own value is never replaced
        (QuotaSettings(allow_unlimited_quota="no"), "1 GB"),
        (QuotaSettings(allow_unlimited_quota=""), "1 GB"),  # a stored '' is not '1'
        (QuotaSettings(allow_unlimited_quota="1 "), "1 GB"),
        (QuotaSettings(allow_unlimited_quota="1"), "none"),
        (QuotaSettings(allow_unlimited_quota="0", user_quota="none"), "none"),
    ],
)
def test_unlimited_forbidden(settings: QuotaSettings, quota: str) -> None:
    """User::getQuota(): with allow_unlimited_quota off, a missing default_quota falls back
    to the first quota_preset entry (Nextcloud's UserTest::testGetDefaultUnlimitedQuotaForbidden)."""
    assert effective_quota(settings) == quota


# --- Dovecot's forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "placeholder", "rule23", "size24"),
    [
        (None, "0", "*:bytes=0", "unlimited"),
        (0, "1", "*:bytes=1", "1"),  # Dovecot reads 0 as unlimited: Nextcloud's zero is one byte
        (1, "1", "*:bytes=1", "1"),
        (GiB, "1073741824", "*:bytes=1073741824", "1073741824"),
        (2**63 - 1, "9223372036854775807", "*:bytes=9223372036854775807", "9223372036854775807"),
    ],
)
def test_dovecot_forms(limit: int | None, placeholder: str, rule23: str, size24: str) -> None:
    assert dovecot_bytes(limit) == placeholder
    assert dovecot23_quota_rule(limit) == rule23
    assert dovecot24_quota_storage_size(limit) == size24


# --- the store, on every database --------------------------------------------------------


@pytest.fixture(
    params=[(db, kind) for db in ("sqlite", "mariadb", "postgresql") for kind in ("sqlalchemy", "oneshot")],
    ids=lambda p: "-".join(p),
)
def quota_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[NextcloudDB, Reader]]:
    """Each database, read by the daemon's store and by checkpassword's (the driver alone)."""
    backend, kind = request.param
    db = NextcloudDB(database_url(backend, request, tmp_path), "oc_", tmp_path)
    path = tmp_path / "ncauth.toml"
    path.write_text(population.config_text(db.url, db.prefix) + '[accounts]\ndomains = ["example.org"]\n')
    path.chmod(0o600)
    section = config_mod.load(str(path)).nextcloud
    store = Store(section) if kind == "sqlalchemy" else store_for(section)
    assert isinstance(store, OneShotStore) == (kind == "oneshot")
    yield db, store
    store.close()
    db.close()


def _seed(db: NextcloudDB, users: dict[str, str], app: dict[str, str], *, lazy: bool = False) -> None:
    with db.engine.begin() as conn:
        for uid, value in users.items():
            ncschema.set_preference(conn, db.prefix, uid, "files", "quota", value)
        for key, value in app.items():
            ncschema.set_appconfig(conn, db.prefix, "files", key, value, lazy=lazy)


def test_store_reads_the_rows(quota_db: tuple[NextcloudDB, Reader]) -> None:
    db, store = quota_db
    _seed(
        db,
        {"alice": "2 GB", "carol": "default", "dan": "none", "erin": "0 B", "Frank": "3 GB"},
        {"default_quota": "1 GB", "quota_preset": "1 GB, 5 GB", "allow_unlimited_quota": "1"},
    )
    with db.engine.begin() as conn:  # rows of other apps and keys stay out
        ncschema.set_preference(conn, db.prefix, "bob", "files_sharing", "quota", "9 GB")
        ncschema.set_preference(conn, db.prefix, "bob", "files", "quota_other", "9 GB")
        ncschema.set_appconfig(conn, db.prefix, "files_sharing", "default_quota", "9 GB")
        ncschema.set_appconfig(conn, db.prefix, "files", "max_quota", "9 GB")
    app = {"default_quota": "1 GB", "allow_unlimited_quota": "1", "quota_preset": "1 GB, 5 GB"}
    assert store.quota_settings("alice") == QuotaSettings(user_quota="2 GB", **app)
    assert store.quota_settings("bob") == QuotaSettings(**app)
    assert quota_bytes(store.quota_settings("alice")) == 2 * GiB
    assert quota_bytes(store.quota_settings("bob")) == GiB
    assert quota_bytes(store.quota_settings("carol")) == GiB
    assert quota_bytes(store.quota_settings("dan")) is None
    assert quota_bytes(store.quota_settings("erin")) == 0
    assert quota_bytes(store.quota_settings("Frank")) == 3 * GiB
    # exact uid only: MariaDB's collation would hand 'Frank' to 'frank' and 'alice' to 'alice '
    assert store.quota_settings("frank").user_quota is None
    assert store.quota_settings("alice ").user_quota is None
    assert store.quota_settings("ALICE").user_quota is None


def test_store_without_rows(quota_db: tuple[NextcloudDB, Reader]) -> None:
    """A fresh Nextcloud has no quota rows at all: unlimited."""
    _, store = quota_db
    assert store.quota_settings("alice") == QuotaSettings()
    assert quota_bytes(store.quota_settings("alice")) is None


def test_store_lazy_and_forbidden_unlimited(quota_db: tuple[NextcloudDB, Reader]) -> None:
    """Lazy appconfig rows (NC 29+) are read too; a hostile-looking value is only data."""
    db, store = quota_db
    _seed(db, {"mallory": "1 GB'; DROP TABLE oc_users; --"}, {"allow_unlimited_quota": "0"}, lazy=True)
    settings = store.quota_settings("mallory")
    assert settings.user_quota == "1 GB'; DROP TABLE oc_users; --"
    assert settings.allow_unlimited_quota == "0"
    assert quota_bytes(settings) is None  # ends in '-': no unit, unparsable, no limit
    # no row of her own: default_quota is missing and unlimited is forbidden, so the first preset
    assert quota_bytes(store.quota_settings("nobody")) == GiB


# --- {quota_bytes}: through ncauth lookup and verify, on every database ------------------------

QUOTA_USERDB = '\nquota_rule = "*:bytes={quota_bytes}"\n'
_APP_KEYS = ("default_quota", "allow_unlimited_quota", "quota_preset")


@pytest.fixture
def nc_quota(standard_nextcloud: NextcloudDB) -> Iterator[tuple[NextcloudDB, str]]:
    """The standard population with a quota config beside it; the quota rows a test writes
    are removed afterwards (the population is shared by the other tests of its backend)."""
    db = standard_nextcloud
    config = db.write_config(population.STANDARD_CONFIG + QUOTA_USERDB, name="quota.toml")
    yield db, str(config)
    with db.engine.begin() as conn:
        p, a = ncschema_tables(db)
        conn.execute(sa.delete(p).where(p.c.appid == "files", p.c.configkey == "quota"))
        conn.execute(sa.delete(a).where(a.c.appid == "files", a.c.configkey.in_(_APP_KEYS)))


def ncschema_tables(db: NextcloudDB) -> tuple[sa.Table, sa.Table]:
    tables = Tables(db.prefix)
    return tables.preferences, tables.appconfig


def _lookup(config: str, login: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str], str]:
    code = cli.main(["lookup", "--config", config, login])
    out, err = capsys.readouterr()
    return code, dict(line.split("=", 1) for line in out.splitlines()), err


def test_lookup_and_verify_hand_dovecot_the_nextcloud_quota(
    nc_quota: tuple[NextcloudDB, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nextcloud's rules (User::getQuota, getQuotaBytes) end as the userdb field the admin
    wrote: a set size, 'default', 'none', '0 B', no row at all."""
    db, config = nc_quota
    _seed(db, {"Alice": "2 GB", "bob": "default", "ivy": "none", "dig": "0 B"}, {"default_quota": "1 GB"})
    expected = {
        "alice": str(2 * GiB),  # oc_preferences files/quota '2 GB'
        "bob": str(GiB),  # 'default': the files app's default_quota
        "ivy": "0",  # 'none': no limit, which Dovecot spells 0
        "dig": "1",  # Nextcloud's zero: one byte, since Dovecot reads 0 as no limit
        "uni": str(GiB),  # no row: default_quota
        "dave": str(GiB),  # disabled users still get their fields (delivery goes on)
    }
    for local, value in expected.items():
        code, fields, err = _lookup(config, f"{local}@example.org", capsys)
        assert code == cli.EX_OK, err
        assert fields["quota_rule"] == f"*:bytes={value}", (local, err)
        assert fields["home"] == f"/var/vmail/example.org/{local}"
        assert "quota" in err and "{quota_bytes} = " + value in err  # the trace names the source

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(population.P.encode())))
    code = cli.main(["verify", "--config", config, population.A, "--password-stdin"])
    out, err = capsys.readouterr()
    assert code == cli.EX_OK, err
    assert f"quota_rule=*:bytes={2 * GiB}" in out.splitlines()
    assert "Nextcloud quota '2 GB'" in err


def test_missing_default_quota(nc_quota: tuple[NextcloudDB, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Without a default_quota row a missing value is unlimited, unless the admin forbade
    unlimited quotas: then the first usable preset (User::getQuota)."""
    db, config = nc_quota
    assert _lookup(config, "uni@example.org", capsys)[1]["quota_rule"] == "*:bytes=0"
    _seed(db, {}, {"allow_unlimited_quota": "0", "quota_preset": "none, 0, 5 GB, 10 GB"})
    assert _lookup(config, "uni@example.org", capsys)[1]["quota_rule"] == f"*:bytes={5 * GiB}"


def test_only_configs_that_use_it_pay_the_query(
    nextcloud_sqlite: NextcloudDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No appconfig query without {quota_bytes}, nor for Postfix's maps (no userdb fields)."""
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        for extra, lookups, owners in (("", 0, 0), (QUOTA_USERDB, 1, 0)):
            path = nextcloud_sqlite.write_config(population.STANDARD_CONFIG + extra, name="q.toml")
            auth = Authenticator(config_mod.load(str(path)))
            statements.clear()
            assert auth.lookup(population.A).ok
            assert sum("oc_appconfig" in s for s in statements) == lookups
            statements.clear()
            assert auth.mailbox_owner(population.A).ok
            assert sum("oc_appconfig" in s for s in statements) == owners
            auth.store.close()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def test_database_error_reading_the_quota_is_temporary(
    nextcloud_sqlite: NextcloudDB, capsys: pytest.CaptureFixture[str]
) -> None:
    """The password checked out, but the quota cannot be read: TEMPFAIL, never a login
    without its limit (and never a refusal: clients would drop the saved password)."""
    db = nextcloud_sqlite
    config = str(db.write_config(population.STANDARD_CONFIG + QUOTA_USERDB, name="q.toml"))
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {db.prefix}appconfig"))
    auth = Authenticator(config_mod.load(config))
    verdict = auth.authenticate(population.A, population.P.encode())
    assert verdict.outcome is Outcome.TEMPFAIL and "appconfig" in verdict.reason, verdict
    assert auth.lookup(population.A).outcome is Outcome.TEMPFAIL
    assert auth.mailbox_owner(population.A).ok  # Postfix's maps read no quota
    auth.store.close()
    assert _lookup(config, population.A, capsys)[0] == cli.EX_TEMPFAIL


def test_grants_follow_the_placeholder(mariadb, tmp_path: Path) -> None:
    """``ncauth sql`` grants ncauth SELECT on oc_appconfig exactly when {quota_bytes} is
    used: with those grants the lookup works; with the grants of a config without it,
    MariaDB refuses the quota query and the lookup is a temporary failure."""
    db = NextcloudDB(mariadb.create_database("nc_quota_grants"), "oc_", tmp_path).populate()
    try:
        _seed(db, {"Alice": "2 GB"}, {})
        plain = db.write_config(population.STANDARD_CONFIG, name="plain.toml")
        quota = db.write_config(population.STANDARD_CONFIG + QUOTA_USERDB, name="quota.toml")
        results = {}
        for name, path in (("plain", plain), ("quota", quota)):
            report = sqlgen.report(config_mod.load(str(path)), "mysql", "2.3", "nc_quota_grants", host="%")
            assert ("oc_appconfig" in report) == (name == "quota")
            user = f"ncq_{name}"
            mariadb.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            section = report.split("(ncauth):\n", 1)[1]
            for line in section.splitlines():
                statement = line.split("--", 1)[0].strip().replace("'ncauth'", f"'{user}'")
                mariadb.execute(statement.replace("'CHANGE-ME'", "'ncq-pw-0ac3'").rstrip(";"))
            url = mariadb.url("nc_quota_grants", user, "ncq-pw-0ac3")
            text = population.config_text(url, "oc_") + population.STANDARD_CONFIG + QUOTA_USERDB
            (tmp_path / f"{name}-user.toml").write_text(text)
            (tmp_path / f"{name}-user.toml").chmod(0o600)
            auth = Authenticator(config_mod.load(str(tmp_path / f"{name}-user.toml")))
            results[name] = auth.lookup(population.A)
            auth.store.close()
        assert results["quota"].ok and results["quota"].fields["quota_rule"] == f"*:bytes={2 * GiB}"
        assert results["plain"].outcome is Outcome.TEMPFAIL, results["plain"]
    finally:
        db.close()


# --- {quota_bytes} in the config, the snippets and SQL mode ------------------------------


def _config(tmp_path: Path, userdb: str, url: str = "mysql+pymysql://nc:pw@localhost/nextcloud") -> Config:
    path = tmp_path / "c.toml"
    path.write_text(population.config_text(url, "oc_") + population.STANDARD_CONFIG + userdb)
    path.chmod(0o600)
    return config_mod.load(str(path))


def test_config_refuses_storage_in_kib(tmp_path: Path) -> None:
    """quota_rule's storage= counts KiB: a byte count there would be 1024 times too much."""
    with pytest.raises(ConfigError, match=r"storage=\{quota_bytes\} would read the byte count as KiB"):
        _config(tmp_path, '\nquota_rule = "*:storage={quota_bytes}"\n')
    assert _config(tmp_path, QUOTA_USERDB).uses_placeholder("quota_bytes")
    assert not _config(tmp_path, "").uses_placeholder("quota_bytes")


def test_sql_mode_cannot_express_the_quota(tmp_path: Path) -> None:
    config = _config(tmp_path, QUOTA_USERDB)
    for version in ("2.3", "2.4"):
        with pytest.raises(ConfigError, match="cannot be expressed in SQL: use checkpassword or the daemon"):
            dovecot.snippet(config, "sql", version)
    report = sqlgen.report(config, "mysql", "2.3", "nextcloud")  # ncauth's own grants still print
    assert "-- No SQL passdb for this config" in report and "password_query" not in report
    assert "GRANT SELECT (appid, configkey, configvalue) ON `nextcloud`.`oc_appconfig` TO 'ncauth'" in report
    assert "oc_appconfig" not in sqlgen.report(_config(tmp_path, ""), "mysql", "2.3", "nextcloud")


def test_snippets_enable_the_quota_plugin(tmp_path: Path) -> None:
    c23 = _config(tmp_path, QUOTA_USERDB + '[daemon]\nsocket = "/run/ncauth/auth.sock"\n')
    for mode in ("checkpassword", "lua"):
        text = dovecot.snippet(c23, mode, "2.3").text
        assert "mail_plugins = $mail_plugins quota\n" in text
        assert "protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}\n" in text
        assert "plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n}\n" in text
    with pytest.raises(
        ConfigError,
        match='quota_rule is not a Dovecot 2.4 setting: write quota_storage_size = "{quota_bytes}"',
    ):
        dovecot.snippet(c23, "lua", "2.4")
    c24 = _config(
        tmp_path, '\nquota_storage_size = "{quota_bytes}"\n[daemon]\nsocket = "/run/ncauth/auth.sock"\n'
    )
    text = dovecot.snippet(c24, "lua", "2.4").text
    assert "mail_plugins {\n  quota = yes\n}\n" in text
    assert "protocol imap {\n  mail_plugins {\n    imap_quota = yes\n  }\n}\n" in text
    assert 'quota_storage_size = unlimited\nquota "User quota" {\n}\n' in text
    with pytest.raises(ConfigError, match="quota_storage_size is not a Dovecot 2.3 setting"):
        dovecot.snippet(c24, "checkpassword", "2.3")
    plain = _config(tmp_path, '[daemon]\nsocket = "/run/ncauth/auth.sock"\n')
    assert "mail_plugins" not in dovecot.snippet(plain, "lua", "2.4").text
    assert "mail_plugins" not in dovecot.snippet(plain, "checkpassword", "2.3").text
