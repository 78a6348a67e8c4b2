"""``ncauth dovecot-config`` refuses what cannot work and sizes what must fit, before a
real Dovecot ever reads the snippet (tests/test_dovecot.py runs the snippets for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncauth import cli


def _config(tmp_path: Path, url: str = "mysql+pymysql://dovecot:pw@db.lan/nextcloud", extra: str = "") -> str:
    path = tmp_path / "ncauth.toml"
    path.write_text(
        f'[nextcloud]\ndatabase_url = "{url}"\n{extra}[accounts]\ndomains = ["example.org"]\n'
        '[userdb]\nuid = "vmail"\n'
    )
    path.chmod(0o600)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], config: str, *args: str) -> tuple[int, str, str]:
    code = cli.main(["dovecot-config", "--config", config, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_checkpassword_on_24_names_the_alternatives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, _config(tmp_path), "--mode", "checkpassword", "--dovecot", "2.4")
    assert code == cli.EX_CONFIG and out == ""
    assert "lua" in err and "sql" in err


@pytest.mark.parametrize("password", ["ab%23cd", "ab%24cd", "ab%25cd", "ab%20cd", "ab%5Ccd", "ab%22cd"])
@pytest.mark.parametrize("version", ["2.3", "2.4"])
def test_sql_mode_refuses_a_password_dovecot_would_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], password: str, version: str
) -> None:
    """'#' starts a comment in Dovecot's config (2.3 and 2.4): 'ab#cd' would be read as 'ab'."""
    config = _config(tmp_path, f"mysql+pymysql://dovecot:{password}@db.lan/nextcloud")
    code, out, err = _run(capsys, config, "--mode", "sql", "--dovecot", version)
    assert code == cli.EX_CONFIG and out == ""
    assert "the password contains" in err and "cannot carry" in err


@pytest.mark.parametrize("version", ["2.3", "2.4"])
def test_sql_mode_raises_the_limit_where_dovecot_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    """Dovecot's SQL passdb (mysql, sqlite) is blocking: argon2 runs in auth-worker, so a
    256 MiB argon2 needs auth-worker's limit raised as well as auth's."""
    config = _config(tmp_path, extra="hashing_memory_cost = 262144\n")
    code, out, _ = _run(capsys, config, "--mode", "sql", "--dovecot", version)
    assert code == cli.EX_OK
    assert (
        "service auth {\n  vsz_limit = 512M\n}" in out
        and "service auth-worker {\n  vsz_limit = 512M\n}" in out
    )
    assert "auth_cache_verify_password_with_worker = yes" in out
    code, out, _ = _run(capsys, _config(tmp_path), "--mode", "sql", "--dovecot", version)
    assert "vsz_limit" not in out  # Nextcloud's default 64 MiB fits the default 256M


def test_checkpassword_raises_the_auth_limit_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, extra="hashing_memory_cost = 262144\n")
    code, out, _ = _run(capsys, config, "--mode", "checkpassword", "--dovecot", "2.3")
    assert code == cli.EX_OK
    assert "service auth {\n  vsz_limit = 512M\n}" in out and "auth-worker" not in out


def test_sql_snippet_takes_the_password_from_the_query_too(tmp_path: Path) -> None:
    """A database password given as ?password= reaches Dovecot's connect string."""
    from ncauth import config as cfg
    from ncauth import dovecot

    path = tmp_path / "c.toml"
    path.write_text(
        '[nextcloud]\ndatabase_url = "mysql+pymysql://nc@db/nextcloud?password=s3cr3t-pw"\n'
        '[accounts]\ndomains = ["example.org"]\n'
    )
    path.chmod(0o600)
    assert "password=s3cr3t-pw" in dovecot.sql_args_file(cfg.load(str(path)))


@pytest.mark.parametrize("target", ["missing-dir/ncauth.conf.ext", "."])
def test_output_that_cannot_be_written_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """--output into a missing directory, or onto a directory: a message naming the path, exit 73."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[nextcloud]\ndatabase_url = "sqlite:////x.db"\n[accounts]\ndomains = ["example.org"]\n'
    )
    config.chmod(0o600)
    out = tmp_path / target
    code = cli.main(
        [
            "dovecot-config",
            "--config",
            str(config),
            "--mode",
            "checkpassword",
            "--dovecot",
            "2.3",
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == cli.EX_CANTCREAT and f"cannot write {out.resolve()}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("daemon", "relay"),
    [
        ("", ""),
        ('socket = "/run/ncauth/auth.sock"\n', " --socket /run/ncauth/auth.sock"),
        ('socket = "/run/ncauth/auth.sock"\nforward = "never"\n', ""),
        ('socket = "/run/ncauth/auth.sock"\nforward = "always"\n', " --socket /run/ncauth/auth.sock"),
        (
            'socket = "/run/nc%/a.sock"\nconnect_timeout = 1.5\nreply_timeout = 20\n',
            " --socket /run/nc%%/a.sock --connect-timeout 1.5 --reply-timeout 20",
        ),
    ],
)
def test_checkpassword_asks_the_configured_daemon_before_reading_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon: str, relay: str
) -> None:
    """With a daemon to ask, both checkpassword args name its socket (and any timeout that is
    not the client's default), so that a relayed login skips the TOML parse; Dovecot's '%'
    expansion is escaped as for the config path."""
    config = _config(tmp_path, extra=f"[daemon]\n{daemon}" if daemon else "")
    code, out, _ = _run(capsys, config, "--mode", "checkpassword", "--dovecot", "2.3")
    assert code == cli.EX_OK
    args = [line.strip() for line in out.splitlines() if line.strip().startswith("args = ")]
    assert len(args) == 2 and all(a.endswith(f"--config {config}{relay}") for a in args), args
