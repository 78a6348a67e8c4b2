"""``ncauth nextcloud-mail``: the ``occ mail:provisioning:create`` command whose logins ncauth
maps back to each user, for every ``match`` mode (nextcloud/mail
``lib/Command/ACreateOrUpdateProvisioningCommand.php`` names the options)."""

from __future__ import annotations

import shlex
import sys

import pytest
from support import leakcheck

from ncauth import config as config_mod
from ncauth.nextcloud_mail import Endpoints, command

NC = '[nextcloud]\ndatabase_url = "sqlite:////tmp/nc.db"\n'


def _config(tmp_path, accounts: str) -> config_mod.Config:
    path = tmp_path / "ncauth.toml"
    path.write_text(NC + "[accounts]\n" + accounts + "\n")
    path.chmod(0o600)
    return config_mod.load(str(path))


def _options(text: str) -> dict[str, str]:
    line = next(line for line in text.splitlines() if not line.startswith("#"))
    argv = shlex.split(line)
    assert argv[:2] == ["occ", "mail:provisioning:create"], argv
    return dict(a[2:].partition("=")[::2] for a in argv[2:])


@pytest.mark.parametrize(
    ("accounts", "domain", "template"),
    [
        ('domains = ["example.org", "b.org"]\ndefault_domain = "b.org"', "*", "%USERID%@b.org"),
        ('domains = ["*"]\nmatch = "address"', "*", "%USERID%"),
        ('domains = ["example.org"]\nmatch = "email"\ntrust_user_emails = true', "example.org", "%EMAIL%"),
    ],
)
def test_logins_ncauth_maps_back(tmp_path, accounts: str, domain: str, template: str) -> None:
    text = command(_config(tmp_path, accounts), Endpoints("mx.example.org", "smtp.example.org"))
    options = _options(text)
    assert options["provisioning-domain"] == domain
    assert options["email-template"] == options["imap-user"] == options["smtp-user"] == template
    assert (options["imap-host"], options["imap-port"], options["imap-ssl-mode"]) == (
        "mx.example.org",
        "993",
        "ssl",
    )
    assert (options["smtp-host"], options["smtp-port"], options["smtp-ssl-mode"]) == (
        "smtp.example.org",
        "587",
        "tls",
    )
    assert "no-master-password" in options


def test_two_factor_users_need_nextcloud_in_trusted_networks(tmp_path) -> None:
    untrusted = command(_config(tmp_path, 'domains = ["example.org"]'), Endpoints("h", "h"))
    assert "trusted_networks" in untrusted
    trusted = command(
        _config(tmp_path, 'domains = ["example.org"]\ntrusted_networks = ["192.0.2.10/32"]'),
        Endpoints("h", "h"),
    )
    assert "trusted_networks" not in trusted


def test_hostile_hosts_stay_one_argument(tmp_path) -> None:
    text = command(_config(tmp_path, 'domains = ["example.org"]'), Endpoints("h; rm -rf /", "$(id)"))
    options = _options(text)
    assert options["imap-host"] == "h; rm -rf /" and options["smtp-host"] == "$(id)"


def test_the_command_line(tmp_path) -> None:
    config = tmp_path / "ncauth.toml"
    config.write_text(NC + '[accounts]\ndomains = ["example.org"]\n')
    config.chmod(0o600)
    base = [sys.executable, "-m", "ncauth", "nextcloud-mail", "--config", str(config)]
    ok = leakcheck.run(
        [*base, "--imap-host", "mx.example.org", "--smtp-port", "465", "--smtp-ssl-mode", "ssl"]
    )
    assert ok.returncode == 0, ok.stderr
    options = _options(ok.stdout)
    assert (options["imap-host"], options["smtp-host"]) == ("mx.example.org", "mx.example.org")
    assert (options["smtp-port"], options["smtp-ssl-mode"]) == ("465", "ssl")
    bad = leakcheck.run([*base, "--imap-port", "70000"])
    assert bad.returncode == 78 and "70000" in bad.stderr and "Traceback" not in bad.stderr
