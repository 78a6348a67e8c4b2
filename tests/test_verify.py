"""``ncauth verify`` decides every case of the standard population correctly, on SQLite,
MariaDB and PostgreSQL, and explains itself step by step."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from support import leakcheck, population
from support.leakcheck import leaked_secrets
from support.population import CASES, Case

from ncauth import cli

EXIT = {"ok": cli.EX_OK, "refused": cli.EX_NOPERM, "unknown": cli.EX_NOUSER}


class _Stdin:
    """A piped standard input (not a terminal), as in ``printf pw | ncauth verify``."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


def run_verify(
    config: str, case: Case, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", _Stdin(case.password_bytes))
    args = ["verify", "--config", config, case.login]
    if case.remote_ip:
        args += ["--remote-ip", case.remote_ip]
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(
    standard_nextcloud, case: Case, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_verify(str(standard_nextcloud.config_path), case, monkeypatch, capsys)
    assert code == EXIT[case.outcome], err
    verdict_line = next(line for line in err.splitlines() if line.strip().startswith("verdict"))
    assert case.reason in verdict_line
    if case.outcome == "ok":
        assert out.splitlines()[0] == f"user={case.user}"
        local, _, domain = case.user.partition("@")
        assert f"home=/var/vmail/{domain}/{local}" in out.splitlines()
    else:
        assert out == ""
    if case.password:
        assert case.password not in out + err


def test_trace_shows_every_step(
    standard_nextcloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_verify(str(standard_nextcloud.config_path), CASES[0], monkeypatch, capsys)
    assert code == 0
    steps = [line.split()[0] for line in err.splitlines()[1:]]
    for step in (
        "config",
        "database",
        "accounts",
        "password",
        "uid",
        "row",
        "enabled",
        "hash",
        "verify",
        "user",
        "userdb",
        "verdict",
        "time",
    ):
        assert step in steps, step
    assert "3| argon2id m=65536,t=4,p=1 via libsodium" in err
    assert "uid_lower 'alice'" in err and "found uid 'Alice'" in err


def test_trace_names_other_backend_users(
    standard_nextcloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c.id == "other-backend-user")
    code, _, err = run_verify(str(standard_nextcloud.config_path), case, monkeypatch, capsys)
    assert code == cli.EX_NOUSER
    assert "another backend (LDAP, SAML" in err


def _argon2_calls(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[int]]:
    """Spies: which argon2 checks a decision asked for ("decoy", "verify"), and how many
    argon2 runs either engine (libsodium, argon2-cffi) really made."""
    import argon2.low_level
    import nacl.bindings

    from ncauth import hashes

    calls: list[str] = []
    runs: list[int] = []
    real_decoy, real_verify = hashes.decoy, hashes._password_verify
    monkeypatch.setattr(hashes, "decoy", lambda *a: calls.append("decoy") or real_decoy(*a))
    monkeypatch.setattr(hashes, "_password_verify", lambda *a: calls.append("verify") or real_verify(*a))
    for module, name in (
        (nacl.bindings, "crypto_pwhash_alg"),
        (argon2.low_level, "verify_secret"),
        (argon2.low_level, "hash_secret_raw"),
    ):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, **k: runs.append(1) or _real(*a, **k))
    return calls, runs


def test_unknown_users_cost_an_argon2_run(
    standard_nextcloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every path that never reaches a real hash spends one decoy argon2 run; a refusal
    whose real hash costs less than Nextcloud's parameters (dave's and tina's: p=2
    against the configured p=1) gets the decoy beside it, so it costs what an unknown
    user does; Alice's hash (m=65536,t=4) costs at least that on its own."""
    calls, runs = _argon2_calls(monkeypatch)
    for case_id, expected in [
        ("unknown-user", ["decoy"]),
        ("other-domain", ["decoy"]),
        ("no-domain", ["decoy"]),
        ("path-traversal", ["decoy"]),
        ("wrong-password", ["verify"]),
        ("disabled", ["decoy", "verify"]),
        ("2fa-login-password", ["decoy", "verify"]),
    ]:
        calls.clear()
        runs.clear()
        case = next(c for c in CASES if c.id == case_id)
        run_verify(str(standard_nextcloud.config_path), case, monkeypatch, capsys)
        assert sorted(calls) == expected, case_id  # the decoy runs in its own thread
        assert len(runs) == len(expected), case_id


def test_urldecoded_retry_costs_alike_for_known_and_unknown_users(
    standard_nextcloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password that urldecodes to something else gets two checks, as in Nextcloud,
    and an unknown user then gets two decoys: the count depends on the password only."""
    calls, runs = _argon2_calls(monkeypatch)
    for login, password, expected in [
        (population.A, "wrong%20one", ["verify", "verify"]),
        ("carol@example.org", "wrong%20one", ["decoy", "decoy"]),
        (population.A, "wrong-one", ["verify"]),
        (population.A, "correct+horse+battery+staple", ["verify", "verify"]),
    ]:
        calls.clear()
        runs.clear()
        run_verify(
            str(standard_nextcloud.config_path), Case("x", login, password, "", ""), monkeypatch, capsys
        )
        assert calls == expected, (login, password)
        assert len(runs) == len(expected), (login, password)


def _with_accounts(db, tmp_name: str, lines: str) -> str:
    text = population.STANDARD_CONFIG.replace("[accounts]\n", "[accounts]\n" + lines + "\n", 1)
    return str(db.write_config(text, name=tmp_name))


@pytest.mark.parametrize(
    ("accounts", "refused", "allowed"),
    [
        # MandatoryTwoFactor::isEnforcedFor: everybody; members of enforced groups only
        # (excluded groups then do not matter); everybody outside the excluded groups
        ("two_factor_enforced = true", ["alice", "gus"], []),
        (
            (
                'two_factor_enforced = true\ntwo_factor_enforced_groups = ["admin"]\n'
                'two_factor_enforced_excluded_groups = ["admin"]'
            ),
            ["gus"],
            ["alice"],
        ),
        ('two_factor_enforced = true\ntwo_factor_enforced_excluded_groups = ["admin"]', ["alice"], ["gus"]),
        ('two_factor_enforced = false\ntwo_factor_enforced_groups = ["admin"]', [], ["alice", "gus"]),
        ("app_password_required = true", ["alice", "gus"], []),
    ],
)
def test_enforced_two_factor_and_app_passwords(
    standard_nextcloud,
    accounts: str,
    refused: list[str],
    allowed: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _with_accounts(standard_nextcloud, "enforced.toml", accounts)
    for uid in refused:
        login = f"{uid}@example.org"
        code, _, err = run_verify(config, Case("x", login, population.P, "", ""), monkeypatch, capsys)
        assert code == cli.EX_NOPERM, (uid, err)
        assert "app password" in next(line for line in err.splitlines() if line.strip().startswith("verdict"))
        # never from a trusted network (webmail inside Nextcloud), never for an app password
        trusted = Case("x", login, population.P, "", "", remote_ip="192.0.2.9")
        assert run_verify(config, trusted, monkeypatch, capsys)[0] == cli.EX_OK, uid
    for uid in allowed:
        code, _, err = run_verify(
            config, Case("x", f"{uid}@example.org", population.P, "", ""), monkeypatch, capsys
        )
        assert code == cli.EX_OK, (uid, err)
    app = Case("x", population.A, population.token("alice-valid"), "", "")
    assert run_verify(config, app, monkeypatch, capsys)[0] == cli.EX_OK


def test_entry_point_and_exit_codes(standard_nextcloud) -> None:
    """The installed ``ncauth`` command, as an admin runs it."""
    config = str(standard_nextcloud.config_path)

    def run(*args: str, password: str = "") -> subprocess.CompletedProcess[str]:
        return leakcheck.run([sys.executable, "-m", "ncauth", *args], input=password)

    ok = run("verify", "--config", config, population.A, "--password-stdin", password=population.P + "\n")
    assert ok.returncode == 0, ok.stderr
    assert run("verify", "--config", config, population.A, password="nope").returncode == 77
    assert run("verify", "--config", config, "nobody@example.org", password="nope").returncode == 67
    assert run("lookup", "--config", config, population.A).stdout.startswith("user=alice@example.org\n")
    assert run("lookup", "--config", config, "nobody@example.org").returncode == 67
    assert run("verify", "--config", config + ".missing", population.A, password="x").returncode == 78
    assert run("verify").returncode == 64
    assert run("frobnicate").returncode == 64


def test_leak_check_catches_a_leak() -> None:
    """The suite-wide check (support/leakcheck.py) would see a password."""
    assert leaked_secrets([f"login failed: password={population.P}"]) == [population.P[:3] + "…"]
    assert leaked_secrets([f'verdict=refused login="{population.A}" reason="wrong password"']) == []
