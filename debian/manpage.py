#!/usr/bin/python3
"""Write ncauth(1) from the program's own --help texts (run by debian/rules at build time).

One source for the options: the man page is argparse's help of ``ncauth`` and of each
subcommand, so it cannot drift from the program. Stdlib only; ncauth's CLI parser imports
nothing else.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

SEE_ALSO = (
    "/usr/share/doc/ncauth/README.md (set-up, configuration, troubleshooting),\n"
    "/usr/share/doc/ncauth/examples/ (an example configuration and the generated snippets)"
)


def _help(*args: str) -> str:
    """``ncauth ARGS --help``, or "" when that command gives no help (it runs a protocol instead)."""
    env = {**os.environ, "COLUMNS": "78"}
    proc = subprocess.run(
        [sys.executable, "-m", "ncauth", *args, "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return proc.stdout if proc.returncode == 0 and proc.stdout.startswith("usage:") else ""


def _commands() -> list[str]:
    """The subcommands, from the parser itself (its usage line shows COMMAND, not a list);
    in a child like _help's, since this script's own directory holds the build's ncauth/."""
    code = (
        "import argparse; from ncauth.cli import _parser; "
        "print(*next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.split()


def _roff(text: str) -> str:
    """Preformatted text, escaped for roff: backslashes, and dots or quotes that start a line."""
    lines = []
    for line in text.rstrip().splitlines():
        line = line.replace("\\", "\\e").replace("-", "\\-")
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return ".nf\n" + "\n".join(lines) + "\n.fi\n"


def main() -> None:
    top = _help()
    commands = _commands()
    assert commands, "no subcommands in ncauth's parser"
    version = subprocess.run(
        [sys.executable, "-m", "ncauth", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    # reproducible: dpkg-buildpackage sets SOURCE_DATE_EPOCH from debian/changelog
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    date = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d")
    out = [
        f'.TH NCAUTH 1 "{date}" "ncauth {version}" "User Commands"\n',
        ".SH NAME\nncauth, ncauth\\-checkpassword \\- Dovecot logins checked against Nextcloud's user database\n",
        (
            ".SH SYNOPSIS\n.B ncauth\n[\\fB\\-\\-config\\fR \\fIPATH\\fR] \\fICOMMAND\\fR ...\n.br\n"
            ".B ncauth\\-checkpassword\n(run by Dovecot 2.3's checkpassword passdb and userdb)\n"
        ),
        ".SH DESCRIPTION\n" + _roff(top),
        ".SH COMMANDS\n",
    ]
    for name in commands:
        text = _help(name)
        out.append(f".SS {name}\n" + (_roff(text) if text else "See \\fBncauth \\-\\-help\\fR above.\n"))
    out.append(
        ".SH FILES\n.TP\n/etc/ncauth/ncauth.toml\nthe configuration (root:dovecot 0640: it holds the "
        "database password)\n.TP\n/run/ncauth/auth.sock\nthe daemon's socket under ncauth.socket\n"
    )
    out.append(".SH SEE ALSO\n" + SEE_ALSO.replace("\n", "\n.br\n") + "\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
