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
    """README's "Install and run" block works as written: the virtualenv made from Debian's
    python the same way (pip install of the checkout, relocated from /opt/ncauth), then the
    first command, ``ncauth demo``, decides its three logins with nothing else set up."""
    import re
    import subprocess

    from support.dovecot_harness import make_dovecot_venv

    block = re.search(r"## Install and run.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(
        1
    )
    apt, install, *runs = block.strip().splitlines()
    assert apt == "apt-get update && apt-get install -y python3-venv"
    # Debian's python, not a pyenv one under /root that user dovecot cannot run
    assert install == "/usr/bin/python3 -m venv /opt/ncauth && /opt/ncauth/bin/pip install ."
    assert runs == ["/opt/ncauth/bin/ncauth demo"]
    venv = make_dovecot_venv(ROOT)
    proc = subprocess.run(  # noqa: S602 - README's own command line, as a newcomer pastes it
        runs[0].replace("/opt/ncauth", str(venv)),
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 of 3 verdicts as expected" in proc.stdout
    assert "verdict       OK: app password (token id 1)" in proc.stdout
    # the pip units' Documentation= is the README that pip installs into the venv
    for name in ("ncauth.service", "ncauth.socket"):
        unit = (ROOT / "systemd" / name).read_text()
        assert "Documentation=file:///opt/ncauth/share/doc/ncauth/README.md\n" in unit, name
    assert (venv / "share" / "doc" / "ncauth" / "README.md").read_text() == (ROOT / "README.md").read_text()


def test_readme_ncauth_commands_parse() -> None:
    """Every ``ncauth`` command line in README's shell blocks names a real subcommand with
    options the parser accepts, so a renamed option cannot leave README behind."""
    import re
    import shlex

    from ncauth import cli

    readme = (ROOT / "README.md").read_text()
    lines = [
        line
        for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
        for line in block.splitlines()
        if "/opt/ncauth/bin/ncauth " in line
    ]
    assert len(lines) >= 6, lines
    for line in lines:
        command = re.split(r" && | \| | #", line.split("/opt/ncauth/bin/ncauth ", 1)[1])[0]
        words = [w for w in shlex.split(command) if w != "…"]
        try:
            cli._parser().parse_args(words)
        except SystemExit as exc:
            pytest.fail(f"README: {line!r} does not parse ({exc.code})")


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


def _slugs(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of *markdown*."""
    import re

    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", markdown, re.M)
    }


def test_docs_links_resolve() -> None:
    """Every relative link in README.md and docs/ names a file that exists and, with an
    anchor, a heading in it; README links every page of docs/ (moved text stays findable)."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 6
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: link to missing {target}"
            if anchor:
                assert anchor in _slugs(linked.read_text()), f"{page.name}: no heading for {target}"
    readme = (ROOT / "README.md").read_text()
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{doc.name}" in readme, f"README does not link docs/{doc.name}"
