"""``ncauth postfix-config``: the main.cf lines an admin pastes, checked as text and by
Postfix's own ``postconf``; a config that cannot give them is a config error (exit 78).
tests/test_postfix_e2e.py runs a real Postfix on exactly this output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.postfix_harness import POSTCONF_BIN, parse_main_cf
from support.require import unavailable

from ncauth import cli, daemon, postfix

SOCKET = "/run/ncauth/postfix.sock"


def _config(
    tmp_path: Path,
    postfix_section: str = f'[postfix]\nsocket = "{SOCKET}"\n',
    domains: str = '["example.org", "example.net"]',
) -> str:
    path = tmp_path / "ncauth.toml"
    path.write_text(
        '[nextcloud]\ndatabase_url = "sqlite:////nonexistent/nextcloud.db"\n'
        f"[accounts]\ndomains = {domains}\nmatch = \"address\"\n{postfix_section}"
    )
    path.chmod(0o600)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], config: str, *args: str) -> tuple[int, str, str]:
    code = cli.main(["postfix-config", "--config", config, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_maps_sasl_and_lmtp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, _config(tmp_path))
    assert (code, err) == (0, "")
    assert parse_main_cf(out) == {
        "virtual_mailbox_domains": "example.org example.net",
        "virtual_mailbox_maps": f"proxy:socketmap:unix:{SOCKET}:recipients",
        "virtual_transport": "lmtp:unix:private/dovecot-lmtp",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": "private/auth",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sender_login_maps": f"proxy:socketmap:unix:{SOCKET}:senders",
        "smtpd_sender_restrictions": "reject_sender_login_mismatch",
    }
    assert "reject_known_sender_login_mismatch" in out  # the comment says why not that one


def test_direct_drops_proxymap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, _config(tmp_path), "--direct")
    settings = parse_main_cf(out)
    assert code == 0
    assert settings["virtual_mailbox_maps"] == f"socketmap:unix:{SOCKET}:recipients"
    assert settings["smtpd_sender_login_maps"] == f"socketmap:unix:{SOCKET}:senders"
    assert "NOT chrooted" in out


def test_map_names_are_the_daemons() -> None:
    assert {postfix.RECIPIENTS, postfix.SENDERS} == set(daemon.MAPS)


@pytest.mark.parametrize(
    ("postfix_section", "domains", "message"),
    [
        ("", '["example.org"]', "[postfix] socket is not set"),
        ('[postfix]\nsocket = ""\n', '["example.org"]', "[postfix] socket is not set"),
        ('[postfix]\nsocket = "/run/nc auth/p.sock"\n', '["example.org"]', "main.cf cannot name a path"),
        ('[postfix]\nsocket = "/run/ncauth:x/p.sock"\n', '["example.org"]', "main.cf cannot name a path"),
        ('[postfix]\nsocket = "/run/$x/p.sock"\n', '["example.org"]', "main.cf cannot name a path"),
        (f'[postfix]\nsocket = "{SOCKET}"\n', '["*"]', "list them in [accounts] domains"),
    ],
    ids=["no-section", "empty", "space", "colon", "dollar", "any-domain"],
)
def test_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], postfix_section: str, domains: str, message: str
) -> None:
    code, out, err = _run(capsys, _config(tmp_path, postfix_section, domains))
    assert code == 78
    assert out == ""
    assert message in err and "ncauth.toml" in err


def test_postconf_reads_it_without_complaint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not Path(POSTCONF_BIN).exists():
        unavailable(f"{POSTCONF_BIN} not found (apt-get install postfix)")
    _, out, _ = _run(capsys, _config(tmp_path))
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text(out)
    (conf / "master.cf").write_text("")
    proc = subprocess.run(
        [POSTCONF_BIN, "-c", str(conf), "-n"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert parse_main_cf(proc.stdout) == parse_main_cf(out) | {"config_directory": str(conf)}
