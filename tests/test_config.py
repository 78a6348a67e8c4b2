"""Configuration: every error names file and key; secrets need private files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from ncauth import config as cfg
from ncauth.errors import ConfigError

NC = '[nextcloud]\ndatabase_url = "sqlite:////tmp/nc.db"\n'
SERVED = "[accounts]\ndomains = ['example.org']\n"
MINIMAL = NC + SERVED


def accounts(extra: str, domains: str = "domains = ['example.org']") -> str:
    """MINIMAL with more [accounts] keys."""
    return f"{NC}[accounts]\n{domains}\n{extra}\n"


def write(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "ncauth.toml"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_minimal_config_has_documented_defaults(tmp_path: Path) -> None:
    c = cfg.load(write(tmp_path, MINIMAL, 0o644))
    assert c.nextcloud.database_urls == ("sqlite:////tmp/nc.db",)
    assert c.nextcloud.table_prefix == "oc_"
    assert (c.accounts.match, c.accounts.two_factor, c.accounts.domains) == (
        "local-part",
        "app-password-only",
        ("example.org",),
    )
    assert c.nextcloud.hashing == cfg.Hashing(65536, 4, 1)
    assert c.daemon.forward == "auto"


def test_full_config(tmp_path: Path) -> None:
    c = cfg.load(
        write(
            tmp_path,
            """
[nextcloud]
database_url = ["mysql+pymysql://ncauth:pw@db1/nextcloud", "mysql+pymysql://ncauth:pw@db2/nextcloud"]
table_prefix = "nc_"
secret = "s3cret"
password_salt = "salty"
hashing_memory_cost = 131072
[accounts]
domains = ["Example.ORG", "another.tld"]
default_domain = "example.org"
match = "email"
trust_user_emails = true
two_factor = "allow-login-password"
trusted_networks = ["127.0.0.1/32", "2001:db8::/32", "192.0.2.7/32"]
[userdb]
uid = "vmail"
home = "/var/vmail/{domain}/{local}"
mail = "maildir:~/Maildir"
[daemon]
socket = "/run/ncauth/auth.sock"
forward = "never"
[log]
level = "debug"
""",
            0o640,
        )
    )
    assert c.nextcloud.database_urls[1].endswith("@db2/nextcloud")
    assert c.accounts.domains == ("example.org", "another.tld")
    assert len(c.accounts.trusted_networks) == 3
    assert c.userdb["home"] == "/var/vmail/{domain}/{local}"
    assert c.nextcloud.hashing.memory_cost == 131072
    assert (c.daemon.socket, c.daemon.forward, c.log_level) == ("/run/ncauth/auth.sock", "never", "debug")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (NC + "tabel_prefix = 'x'\n" + SERVED, "[nextcloud] tabel_prefix: unknown key"),
        (MINIMAL + "[acounts]\n", "acounts: unknown key"),
        ("[accounts]\n", "[nextcloud]: section missing"),
        ("[nextcloud]\n", "[nextcloud] database_url: missing"),
        ('[nextcloud]\ndatabase_url = "localhost"\n' + SERVED, "[nextcloud] database_url: not a URL"),
        ('[nextcloud]\ndatabase_url = []\n' + SERVED, "[nextcloud] database_url: must not be empty"),
        (NC + "table_prefix = 'oc_; DROP'\n" + SERVED, "[nextcloud] table_prefix: may only contain"),
        (NC + "connect_timeout = 'soon'\n" + SERVED, "[nextcloud] connect_timeout: must be a number"),
        (accounts("match = 'uid'"), "[accounts] match: 'uid' is not one of"),
        (accounts("", "domains = 'example.org'"), "[accounts] domains: must be a list"),
        (accounts("", "domains = ['exa mple.org']"), "[accounts] domains: 'exa mple.org' is not a domain"),
        (
            accounts("default_domain = 'b.tld'", "domains = ['a.tld']"),
            "[accounts] default_domain: 'b.tld' is not one of",
        ),
        (accounts("trusted_networks = ['10.0.0.0/33']"), "[accounts] trusted_networks: '10.0.0.0/33'"),
        (accounts("app_passwords = 'yes'"), "[accounts] app_passwords: must be true or false"),
        # identity safety: one rule for domains (ncauth.names), domains required, "*" only for "address"
        (NC, "[accounts] domains: missing"),
        (accounts("", "domains = []"), "[accounts] domains: missing"),
        (accounts("", "domains = ['']"), "[accounts] domains: '' is not a domain"),
        (accounts("", "domains = ['ex\u00e4mple.org']"), "is not a domain name"),
        (accounts("", "domains = ['\uff45xample.org']"), "is not a domain name"),
        (accounts("", "domains = ['\u0661\u0662.org']"), "is not a domain name"),
        (accounts("", "domains = ['example..org']"), "is not a domain name"),
        (accounts("", "domains = ['-example.org']"), "is not a domain name"),
        (accounts("", "domains = ['*']"), '"*" (any domain) is only for match = "address"'),
        (accounts("match = 'address'", "domains = ['*', 'example.org']"), '"*" (any domain) is only for'),
        (accounts("default_domain = 'ex\u00e4mple.org'"), "[accounts] default_domain:"),
        # match = "email" only through addresses users cannot set themselves, unless trusted explicitly
        (accounts("match = 'email'"), "[accounts] match: \"email\" logs users in by the address"),
        # trusted networks exactly as written, never every address
        (accounts("trusted_networks = ['192.0.2.25/8']"), "did you mean 192.0.0.0/8?"),
        (accounts("trusted_networks = ['0.0.0.0/0']"), "is every address"),
        (accounts("trusted_networks = ['::/0']"), "is every address"),
        (
            NC + "max_argon2_memory_cost = 65536\nhashing_memory_cost = 131072\n" + SERVED,
            "[nextcloud] hashing_memory_cost: must be between",
        ),
        (MINIMAL + "[userdb]\nhome = '/var/vmail/{login}'\n", "[userdb] home: unknown placeholder {login}"),
        (MINIMAL + "[userdb]\nhome = '/var/vmail/{domain'\n", "[userdb] home: unbalanced"),
        (MINIMAL + "[userdb]\nuid = 5000\n", "[userdb] uid: must be a string"),
        (MINIMAL + "[userdb]\nHome = 'x'\n", "[userdb] Home: field names"),
        (MINIMAL + "[daemon]\nsocket = 'auth.sock'\n", "[daemon] socket: must be an absolute path"),
        (MINIMAL + "[log]\nlevel = 'loud'\n", "[log] level: 'loud' is not one of"),
        ("[nextcloud\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        cfg.load(path)
    assert str(err.value).startswith(path + ": ")
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        cfg.load(str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(
    "secret_line",
    [
        'database_url = "mysql+pymysql://ncauth:hunter2@localhost/nextcloud"',
        'database_url = "sqlite:////x.db"\nsecret = "abc"',
        'database_url = "sqlite:////x.db"\npassword_salt = "abc"',
    ],
)
def test_world_readable_secret_is_refused(tmp_path: Path, secret_line: str) -> None:
    path = write(tmp_path, f"[nextcloud]\n{secret_line}\n" + SERVED, 0o644)
    with pytest.raises(ConfigError, match="readable by every user.*chmod 0640") as err:
        cfg.load(path)
    assert "hunter2" not in str(err.value)
    os.chmod(path, 0o640)
    assert cfg.load(path).nextcloud


def test_world_writable_is_refused_even_without_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="writable by every user"):
        cfg.load(write(tmp_path, MINIMAL, 0o666))


def test_group_writable_is_refused(tmp_path: Path) -> None:
    """Whoever may write the config may point ncauth at a database of their own."""
    with pytest.raises(ConfigError, match="writable by its group.*chmod go-w"):
        cfg.load(write(tmp_path, MINIMAL, 0o660))


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://ncauth:hun#ter2@localhost/nextcloud",  # '#' hides it from urlsplit
        "mysql+pymysql://ncauth:hun/ter2@localhost/nextcloud",  # so does '/'
        "mysql+pymysql://ncauth:hun?ter2@localhost/nextcloud",  # and '?'
        "mysql+pymysql://ncauth@localhost/nextcloud?password=hunter2",
        "mysql+pymysql://localhost/nextcloud?passwd=hunter2",
    ],
)
def test_every_password_form_needs_a_private_file(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[nextcloud]\ndatabase_url = "{url}"\n' + SERVED, 0o644)
    with pytest.raises(ConfigError, match="readable by every user") as err:
        cfg.load(path)
    assert "hunter2" not in str(err.value) and "ter2" not in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://ncauth:hun#ter2@localhost/nextcloud",
        "mysql+pymysql://ncauth:hun/ter2@localhost/nextcloud",
        "mysql+pymysql://ncauth@localhost/nextcloud?password=hunter2",
        "mysql+pymysql://localhost/nextcloud?passwd=hunter2",
        "postgresql+psycopg://nc:hunter2@[::1/nextcloud",  # malformed: '[' without ']'
    ],
)
def test_redact_url_hides_every_password_form(url: str) -> None:
    from ncauth.store import redact_url

    shown = redact_url(url)
    assert "ter2" not in shown and shown.startswith(url.split("://")[0])


def test_malformed_database_url_is_a_config_error(tmp_path: Path) -> None:
    from ncauth.store import parse_url

    with pytest.raises(ConfigError, match="not a valid database URL") as err:
        parse_url("postgresql+psycopg://nc:hunter2@[::1/nextcloud")
    assert "hunter2" not in str(err.value)


def test_config_path_precedence() -> None:
    assert cfg.config_path("/x.toml", {"NCAUTH_CONFIG": "/y.toml"}) == "/x.toml"
    assert cfg.config_path(None, {"NCAUTH_CONFIG": "/y.toml"}) == "/y.toml"
    assert cfg.config_path(None, {}) == "/etc/ncauth/ncauth.toml"


def test_redact_url() -> None:
    from ncauth.store import redact_url

    assert redact_url("mysql+pymysql://nc:p%40ss@db/nextcloud") == "mysql+pymysql://nc:***@db/nextcloud"
    assert redact_url("sqlite:////x.db") == "sqlite:////x.db"


# --- config.php ---------------------------------------------------------------


def _config_php(tmp_path: Path, body: str, extra: str = "") -> Path:
    d = tmp_path / "config"
    d.mkdir()
    (d / "config.php").write_text("<?php\n$CONFIG = array (\n" + body + "\n);\n")
    if extra:
        (d / "s3.config.php").write_text("<?php\n$CONFIG = array (\n" + extra + "\n);\n")
    return d / "config.php"


NASTY_PASSWORD = "p@ss:w/o rd?#%&'\""


@pytest.mark.parametrize(
    ("body", "url"),
    [
        (
            "'dbtype' => 'mysql', 'dbhost' => 'localhost', 'dbname' => 'nextcloud', 'dbuser' => 'nc', 'dbpassword' => 'pw',",
            "mysql+pymysql://nc:pw@localhost/nextcloud?unix_socket=/run/mysqld/mysqld.sock",
        ),
        (
            "'dbtype' => 'mysql', 'dbhost' => 'db.lan:3307', 'dbname' => 'nc', 'dbuser' => 'nc', 'dbpassword' => 'pw',",
            "mysql+pymysql://nc:pw@db.lan:3307/nc",
        ),
        (
            "'dbtype' => 'mysql', 'dbhost' => 'localhost:/var/run/mysqld/m.sock', 'dbname' => 'nc', 'dbuser' => 'nc', 'dbpassword' => 'pw',",
            "mysql+pymysql://nc:pw@localhost/nc?unix_socket=/var/run/mysqld/m.sock",
        ),
        # dbport is written by the installer only; ConnectionFactory connects by dbhost
        (
            "'dbtype' => 'mysql', 'dbhost' => '127.0.0.1', 'dbport' => '3310', 'dbname' => 'nc', 'dbuser' => 'nc', 'dbpassword' => 'pw',",
            "mysql+pymysql://nc:pw@127.0.0.1/nc",
        ),
        (
            "'dbtype' => 'pgsql', 'dbhost' => '[::1]:5433', 'dbname' => 'nc', 'dbuser' => 'nc', 'dbpassword' => 'pw',",
            "postgresql+psycopg://nc:pw@[::1]:5433/nc",
        ),
        (
            "'dbtype' => 'sqlite3', 'dbname' => 'owncloud', 'datadirectory' => '/srv/nc/data',",
            "sqlite:////srv/nc/data/owncloud.db",
        ),
    ],
)
def test_config_php_database_url(tmp_path: Path, body: str, url: str) -> None:
    php = cfg.read_config_php(str(_config_php(tmp_path, body)))
    assert cfg.database_url_from_php(php.settings, "config.php") == url


def test_config_php_supplies_keys_and_merges_extra_files(tmp_path: Path) -> None:
    path = _config_php(
        tmp_path,
        "'dbtype' => 'mysql', 'dbhost' => 'db', 'dbname' => 'nextcloud', 'dbuser' => 'nc',"
        f" 'dbpassword' => {NASTY_PASSWORD!r}.'', 'dbtableprefix' => 'oc_', 'secret' => 'sekrit',"
        " 'passwordsalt' => 'salt', 'hashingMemoryCost' => 131072,",
        extra="'dbtableprefix' => 'nc_',",
    )
    toml = write(tmp_path, f'[nextcloud]\nconfig_php = "{path}"\n' + SERVED, 0o640)
    c = cfg.load(toml)
    assert (c.nextcloud.secret, c.nextcloud.password_salt, c.nextcloud.table_prefix) == (
        "sekrit",
        "salt",
        "nc_",
    )
    assert c.nextcloud.hashing.memory_cost == 131072
    url = sa.engine.make_url(c.nextcloud.database_urls[0])
    assert url.password == NASTY_PASSWORD and url.host == "db" and url.database == "nextcloud"


@pytest.mark.parametrize(
    ("value", "two_factor", "token_auth"),
    [
        # twofactor_enforced: MandatoryTwoFactor::getState (Nextcloud 32) compares
        # getSystemValue('twofactor_enforced', 'false') === 'true'; `occ twofactorauth:enforce
        # --on`/`--off` write the strings 'true'/'false'. Newer releases read it with
        # getSystemValueBool and write booleans, so a non-string value is PHP's (bool):
        # a hand-written boolean true counts as on (the stricter reading; see docs/decisions.md).
        # token_auth_enforced: Session::isTokenAuthEnforced, getSystemValueBool: PHP's (bool),
        # so even the string 'false' (occ config:system:set without --type) turns it on.
        ("'true'", True, True),
        ("'false'", False, True),
        ("true", True, True),
        ("false", False, False),
        ("1", True, True),
        ("0", False, False),
        ("''", False, False),
        ("'0'", False, False),
        ("'yes'", False, True),
        ("array ()", False, False),
        ("NULL", False, False),
        (None, False, False),
    ],
)
def test_config_php_switches_are_read_with_nextclouds_getters(
    tmp_path: Path, value: str | None, two_factor: bool, token_auth: bool
) -> None:
    body = "'dbtype' => 'sqlite3', 'datadirectory' => '/d',"
    if value is not None:
        body += f" 'twofactor_enforced' => {value}, 'token_auth_enforced' => {value},"
    path = _config_php(tmp_path, body)
    c = cfg.load(write(tmp_path, f'[nextcloud]\nconfig_php = "{path}"\n' + SERVED, 0o600))
    assert (c.accounts.two_factor_enforced, c.accounts.app_password_required) == (two_factor, token_auth)


def test_config_php_is_read_as_data_never_run(tmp_path: Path) -> None:
    """Issue 11.9: a dropped *.config.php is parsed, and code in it is refused, not run."""
    marker = tmp_path / "pwned"
    path = _config_php(tmp_path, "'dbtype' => 'sqlite3', 'datadirectory' => '/d',")
    (path.parent / "evil.config.php").write_text(
        f"<?php\nshell_exec('touch {marker}');\n$CONFIG = ['secret' => 'x'];\n"
    )
    with pytest.raises(ConfigError, match="config_php = .*evil.config.php"):
        cfg.load(write(tmp_path, f'[nextcloud]\nconfig_php = "{path}"\n' + SERVED, 0o600))
    assert not marker.exists()


def test_config_php_extra_files_merge_in_natural_order(tmp_path: Path) -> None:
    """lib/private/Config.php natsort()s the *.config.php files: 10 comes after 9."""
    path = _config_php(tmp_path, "'dbtype' => 'sqlite3', 'datadirectory' => '/d', 'secret' => 'main',")
    for name, secret in [("10", "ten"), ("9", "nine"), ("a", "a")]:
        (path.parent / f"{name}.config.php").write_text(f"<?php\n$CONFIG = ['secret' => '{secret}'];\n")
    (path.parent / "other.php").write_text("<?php\n$CONFIG = ['secret' => 'not a config file'];\n")
    assert cfg.read_config_php(str(path)).settings.secret == "a"
    (path.parent / "a.config.php").unlink()
    assert cfg.read_config_php(str(path)).settings.secret == "ten"


def test_config_php_explicit_keys_win(tmp_path: Path) -> None:
    path = _config_php(tmp_path, "'dbtype' => 'sqlite3', 'datadirectory' => '/d', 'secret' => 'from-php',")
    c = cfg.load(
        write(tmp_path, f'[nextcloud]\nconfig_php = "{path}"\nsecret = "from-toml"\n' + SERVED, 0o600)
    )
    assert c.nextcloud.secret == "from-toml"


def test_config_php_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config_php = .*missing.php"):
        cfg.read_config_php(str(tmp_path / "missing.php"))


def _readme_defaults() -> list[tuple[str, str, str]]:
    """(section, key, default as README writes it) for every row of README's key tables."""
    import re

    section, rows = "", []
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for line in readme.splitlines():
        if m := re.fullmatch(r"`\[(\w+)\]`.*", line):
            section = m.group(1)
        elif line.startswith("#"):  # a heading ends the key tables: later tables are not config
            section = ""
        elif section and (m := re.fullmatch(r"\| (`[^|]+`) \| ([^|]+) \|.*", line)):
            keys = re.findall(r"`(\w+)`", m.group(1))
            values = [v.strip().strip("`") for v in m.group(2).split("`, `")]
            if values[0].startswith("—"):
                continue
            values = values * len(keys) if len(values) == 1 else values  # one default for all
            assert len(values) == len(keys), line
            rows += [(section, k, v) for k, v in zip(keys, values, strict=True)]
    return rows


def test_readme_tables_state_the_code_defaults(tmp_path: Path) -> None:
    """README's tables are read by admins as the defaults: each must be what loading a
    config without the key gives."""
    import json

    c = cfg.load(write(tmp_path, MINIMAL, 0o644))
    nc = c.nextcloud
    nested = {
        **{f"hashing_{k}": v for k, v in nc.hashing._asdict().items()},
        **{f"max_{k}": v for k, v in nc.limits._asdict().items()},
    }
    sections = {
        "nextcloud": {**nc._asdict(), **nested},
        "accounts": c.accounts._asdict(),
        "daemon": c.daemon._asdict(),
        "postfix": c.postfix._asdict(),
    }
    rows = _readme_defaults()
    assert {s for s, _, _ in rows} == set(sections) and len(rows) > 40
    for section, key, documented in rows:
        value = sections[section][key]
        value = list(value) if isinstance(value, tuple) else value
        assert json.loads(documented) == value, (section, key, documented, value)
