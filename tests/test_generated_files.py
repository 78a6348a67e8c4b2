"""The examples in dovecot-snippets/ and sql/ are exactly what ncauth generates from
dovecot-snippets/ncauth.toml.example, so the documentation cannot drift from the code;
ncauth/sqltext.py is exactly what SQLAlchemy compiles of ncauth.store's statements.
Regenerate them with:  python tests/test_generated_files.py"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "dovecot-snippets" / "ncauth.toml.example"
PREFIX = "/opt/ncauth/bin"  # where README installs ncauth


def generated() -> dict[Path, str]:
    """Every generated example file and its content."""
    from ncauth import config, dovecot, sqlgen, store

    real = sys.executable
    sys.executable = f"{PREFIX}/python3"  # installed_program() paths as README installs them
    try:
        text = EXAMPLE.read_text()
        cfg = config.parse(config.tomllib.loads(text), "/etc/ncauth/ncauth.toml")
        # Lua mode needs the daemon's socket, which the example leaves commented out.
        with_socket = config.parse(
            config.tomllib.loads(text.replace("# socket = ", "socket = ")), "/etc/ncauth/ncauth.toml"
        )
        files: dict[Path, str] = {
            ROOT / "dovecot-snippets" / dovecot.LUA_NAME: dovecot.lua_script("/run/ncauth/auth.sock")
        }
        for version in ("2.3", "2.4"):
            for mode in dovecot.MODES:
                if mode == "checkpassword" and version == "2.4":
                    continue
                snip = dovecot.snippet(with_socket if mode == "lua" else cfg, mode, version)
                files[ROOT / "dovecot-snippets" / version / f"ncauth-{mode}.conf.ext"] = snip.text
                if snip.sql_args:
                    files[ROOT / "dovecot-snippets" / version / dovecot.SQL_ARGS_NAME] = snip.sql_args
        files[ROOT / "ncauth" / "sqltext.py"] = store.sqltext_source()
        for dialect in sqlgen.DIALECTS:
            files[ROOT / "sql" / f"{dialect}.sql"] = sqlgen.report(cfg, dialect, "2.3", "nextcloud")
        return files
    finally:
        sys.executable = real


@pytest.mark.parametrize("path", sorted(generated()), ids=lambda p: str(p.relative_to(ROOT)))
def test_example_is_current(path: Path) -> None:
    assert path.exists(), f"{path} missing: run python tests/test_generated_files.py"
    assert path.read_text() == generated()[path], f"{path} is stale: run python tests/test_generated_files.py"


if __name__ == "__main__":
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(ROOT))


def test_readme_install_and_run_commands() -> None:
    """README's "Install and run" block works as written, in a virtualenv made from Debian's
    python the same way (pip install of the checkout), relocated from /opt/ncauth."""
    import re
    import subprocess

    from support.dovecot_harness import make_dovecot_venv

    block = re.search(r"## Install and run.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(
        1
    )
    install, run = block.strip().splitlines()
    assert "python3 -m venv /opt/ncauth" in install and "/opt/ncauth/bin/pip install ." in install
    venv = make_dovecot_venv(ROOT)
    proc = subprocess.run(  # noqa: S602 - README's own command line, as a newcomer pastes it
        run.replace("/opt/ncauth", str(venv)),
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "driver = checkpassword" in proc.stdout and f"{venv}/bin/ncauth-checkpassword" in proc.stdout


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze accepts the units (with ExecStart pointing at a real ncauth)."""
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    ncauth = Path(sys.executable).parent / "ncauth"
    for name in ("ncauth.socket", "ncauth.service"):
        text = (ROOT / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/ncauth/bin/ncauth", str(ncauth)))
    service = (ROOT / "systemd" / "ncauth.service").read_text()
    assert "ExecStart=/opt/ncauth/bin/ncauth serve --config /etc/ncauth/ncauth.toml" in service
    assert "ListenStream=/run/ncauth/auth.sock" in (ROOT / "systemd" / "ncauth.socket").read_text()
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / "ncauth.socket"), str(tmp_path / "ncauth.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_ci_runs_exactly_the_readme_test_commands() -> None:
    """.ci/run is README's "Run the tests" block, line for line and in order: CI proves
    what a newcomer is told to type."""
    import re

    block = re.search(r"## Run the tests.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] not in "#"]
    commands = block.group(1).strip().splitlines()
    assert len(commands) >= 3 and commands[-1].endswith("-m pytest")
    positions = [next((i for i, line in enumerate(ci) if line == c), -1) for c in commands]
    assert -1 not in positions and positions == sorted(positions), (commands, ci)
