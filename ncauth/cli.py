"""The ``ncauth`` command: verify, lookup, checkpassword (and more as they land).

Exit statuses follow sysexits.h so that scripts can tell a refusal from an outage:
0 ok, 64 usage, 67 unknown user, 73 cannot write, 75 temporary failure, 77 refused,
78 config error, 130 interrupted (Ctrl-C). ``ncauth checkpassword`` keeps Dovecot's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from ncauth import __version__
from ncauth.errors import CannotWrite, ConfigError, NcauthError, TemporaryFailure

if TYPE_CHECKING:
    from ncauth.config import Config

EX_OK = 0
EX_USAGE = 64
EX_NOUSER = 67
EX_CANTCREAT = CannotWrite.exit_code
EX_TEMPFAIL = TemporaryFailure.exit_code
EX_NOPERM = 77
EX_CONFIG = ConfigError.exit_code
EX_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
#: checkpassword's "temporary failure" (Dovecot's table), known here without importing it
_CHECKPASSWORD_TEMPFAIL = 111


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


_CONFIG_HELP = "configuration file (default: $NCAUTH_CONFIG, else /etc/ncauth/ncauth.toml)"


def _parser() -> _Parser:
    # --config is taken before the command and after it. The subcommands' copy has its own
    # dest and no default, so that it cannot overwrite the top-level one with None.
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", dest="command_config", default=argparse.SUPPRESS, metavar="PATH", help=_CONFIG_HELP
    )
    p = _Parser(prog="ncauth", description="Dovecot logins checked against Nextcloud's user database.")
    p.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    p.add_argument("--version", action="version", version=f"ncauth {__version__}")
    sub = p.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="COMMAND",
        help="one of these; `ncauth COMMAND --help` lists its options",
    )
    sub.add_parser("demo", help="decide three logins on a throwaway Nextcloud database (nothing else needed)")

    v = sub.add_parser("verify", parents=[common], help="one authentication, traced step by step on stderr")
    v.add_argument("user", help="the login as a mail client would send it")
    v.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (also done when stdin is not a terminal)",
    )
    v.add_argument("--remote-ip", default="", help="client address, for accounts.trusted_networks")

    lk = sub.add_parser("lookup", parents=[common], help="userdb lookup without a password")
    lk.add_argument("user", help="the login as a mail client would send it, or an address Postfix asks about")

    dc = sub.add_parser("dovecot-config", parents=[common], help="print a Dovecot snippet to !include")
    dc.add_argument(
        "--mode",
        required=True,
        choices=("checkpassword", "sql", "lua"),
        help="how Dovecot asks: checkpassword (2.3), sql (Dovecot reads the database itself) "
        "or lua (2.3/2.4, through the daemon)",
    )
    dc.add_argument("--dovecot", choices=("2.3", "2.4"), help="Dovecot version (default: the installed one)")
    dc.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the snippet to FILE (mode 0600 when it holds a password) and the file it "
        "points to beside it (2.3 SQL mode: the SQL args file; Lua mode: ncauth.lua) "
        "instead of printing it",
    )
    dc.add_argument(
        "--postfix-socket",
        default="/var/spool/postfix/private/auth",
        metavar="PATH",
        help="Dovecot's auth listener for Postfix SMTP AUTH (default: %(default)s)",
    )
    dc.add_argument(
        "--postfix-user",
        default="postfix",
        metavar="USER",
        help="owner of that listener (default: %(default)s)",
    )
    dc.add_argument(
        "--postfix-group", default="postfix", metavar="GROUP", help="its group (default: %(default)s)"
    )

    sq = sub.add_parser("sql", parents=[common], help="the SQL passdb queries and least-privilege grants")
    sq.add_argument(
        "--dialect",
        choices=("mysql", "postgresql", "sqlite"),
        help="SQL dialect (default: that of database_url)",
    )
    sq.add_argument("--dovecot", choices=("2.3", "2.4"), default="2.3", help="Dovecot variable syntax")
    sq.add_argument("--database", help="database name for the grants (default: from database_url)")
    sq.add_argument("--dovecot-user", default="dovecot_nc", help="database user for Dovecot's SQL passdb")
    sq.add_argument("--ncauth-user", default="ncauth", help="database user for ncauth itself")
    sq.add_argument(
        "--host", default="localhost", help="MySQL/MariaDB host part of the users (default: localhost)"
    )

    pf = sub.add_parser(
        "postfix-config",
        parents=[common],
        help="print the main.cf lines for the [postfix] maps, SMTP AUTH and LMTP delivery",
    )
    pf.add_argument(
        "--direct",
        action="store_true",
        help="socketmap without proxy: (only for an smtpd that does not run chrooted)",
    )

    nm = sub.add_parser(
        "nextcloud-mail",
        parents=[common],
        help="print the occ command that gives every Nextcloud user a Mail app account on this server",
    )
    nm.add_argument(
        "--imap-host", metavar="HOST", help="IMAP server as Nextcloud reaches it (default: this host's name)"
    )
    nm.add_argument("--imap-port", type=int, default=993, metavar="PORT", help="default 993 (implicit TLS)")
    nm.add_argument(
        "--imap-ssl-mode", default="ssl", metavar="MODE", help="none, ssl (implicit TLS) or tls (STARTTLS)"
    )
    nm.add_argument("--smtp-host", metavar="HOST", help="SMTP submission server (default: the IMAP host)")
    nm.add_argument(
        "--smtp-port", type=int, default=587, metavar="PORT", help="default 587 (submission, STARTTLS)"
    )
    nm.add_argument(
        "--smtp-ssl-mode", default="tls", metavar="MODE", help="none, ssl (implicit TLS) or tls (STARTTLS)"
    )
    nm.add_argument(
        "--occ", default="occ", help="how occ is run here, e.g. 'sudo -u www-data php /var/www/nextcloud/occ'"
    )

    sub.add_parser(
        "users",
        parents=[common],
        help="list every enabled account this configuration serves, one canonical name a line",
    )
    sub.add_parser("serve", parents=[common], help="run the daemon ([daemon] socket, or systemd's socket)")
    sub.add_parser("status", parents=[common], help="the running daemon's counters")

    doctor_help = (
        "check this installation (config, users, grants, tables, socket, daemon, Dovecot): one line "
        "per finding with its fix; exit 0 no failures, 1 failures, 78 config cannot load"
    )
    dr = sub.add_parser("doctor", parents=[common], help=doctor_help, description=doctor_help)
    dr.add_argument(
        "--user", metavar="LOGIN", help="also look LOGIN up end to end (ncauth, then doveadm user)"
    )
    dr.add_argument("--dovecot-config", metavar="FILE", help="Dovecot's config for doveconf/doveadm -c")
    dr.add_argument("--dovecot-user", metavar="USER", help="who runs checkpassword (default: from doveconf)")
    dr.add_argument(
        "--dovecot-worker-user", metavar="USER", help="who runs the Lua passdb (default: from doveconf)"
    )
    dr.add_argument(
        "--daemon-user", metavar="USER", help="the daemon's user (default: ncauth.service's User=)"
    )
    dr.add_argument("--strict", action="store_true", help="warnings count as problems (exit 1)")

    cp = sub.add_parser(
        "checkpassword",
        parents=[common],
        help="Dovecot 2.3 checkpassword program (same as ncauth-checkpassword)",
        add_help=False,
    )
    cp.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="passed on to the checkpassword program (Dovecot's reply program)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["checkpassword"]:
        return _checkpassword(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    args.config = _config_option(parser, args)
    try:
        return _run(args)
    except NcauthError as exc:
        sys.stderr.write(f"ncauth {args.command}: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C, at the password prompt or later: no traceback
        sys.stderr.write(f"\nncauth {args.command}: interrupted\n")
        return EX_INTERRUPTED


def _checkpassword(argv: list[str]) -> int:
    """``ncauth checkpassword``, with or without ``--config`` before it: a module that
    cannot be loaded is 111 (temporary failure), never Python's exit 1 ("wrong password")."""
    try:
        from ncauth import checkpassword
    except BaseException as exc:
        sys.stderr.write(
            f"ncauth: cannot load checkpassword, temporary failure: {type(exc).__name__}: {exc}\n"
        )
        return _CHECKPASSWORD_TEMPFAIL
    return checkpassword.main(argv)


def _config_option(parser: _Parser, args: argparse.Namespace) -> str | None:
    """The one ``--config``: given before the command or after it, never two different files."""
    before: str | None = args.config
    after: str | None = getattr(args, "command_config", None)
    if before and after and os.path.realpath(before) != os.path.realpath(after):
        problem = f"--config {before} before the command and --config {after} after it: give one"
        if args.command == "checkpassword":  # Dovecot's exit table: anything wrong is 111
            sys.stderr.write(f"ncauth checkpassword: {problem}\n")
            raise SystemExit(_CHECKPASSWORD_TEMPFAIL)
        parser.error(problem)
    return after or before


def _run(args: argparse.Namespace) -> int:
    """The command *args* names; an NcauthError on the way ends it with its exit_code."""
    if args.command == "demo":
        from ncauth import demo

        return demo.main()
    if args.command == "verify":
        return verify(args.config, args.user, password_stdin=args.password_stdin, remote_ip=args.remote_ip)
    if args.command == "lookup":
        return lookup(args.config, args.user)
    if args.command == "serve":
        from ncauth import config as config_mod
        from ncauth import daemon

        return daemon.serve(config_mod.config_path(args.config))
    if args.command == "status":
        return status(args.config)
    if args.command == "users":
        return users(args.config)
    if args.command == "doctor":
        from ncauth import doctor

        known = {f.name for f in dataclasses.fields(doctor.Options)}
        return doctor.run(doctor.Options(**{k: v for k, v in vars(args).items() if k in known}))
    if args.command == "dovecot-config":
        return dovecot_config(args)
    if args.command == "sql":
        return sql(args)
    if args.command == "postfix-config":
        return postfix_config(args.config, direct=args.direct)
    if args.command == "nextcloud-mail":
        return nextcloud_mail(args)
    if args.command == "checkpassword":  # reached only with --config before it (see main)
        return _checkpassword(["--config", args.config, *args.rest] if args.config else args.rest)
    return EX_USAGE  # pragma: no cover - argparse enforces the choices


class _Tracer:
    """Prints the steps of one decision, aligned, on stderr."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, step: str, detail: str) -> None:
        self.out.write(f"  {step:<13} {detail}\n")
        self.out.flush()


def _load(config_arg: str | None, trace: _Tracer) -> Config:
    from ncauth import config as config_mod

    path = config_mod.config_path(config_arg)
    trace("config", path)
    config = config_mod.load(path)
    from ncauth.store import parse_url, redact_url

    trace(
        "database",
        ", ".join(redact_url(u) for u in config.nextcloud.database_urls)
        + f" (table prefix {config.nextcloud.table_prefix!r})",
    )
    acc = config.accounts
    trace(
        "accounts",
        f"match {acc.match}; domains {', '.join(acc.domains) or 'any'}"
        + (f"; default domain {acc.default_domain}" if acc.default_domain else "")
        + f"; two-factor {acc.two_factor}",
    )
    for url in config.nextcloud.database_urls:
        parse_url(url)
    return config


def _read_password(password_stdin: bool) -> bytes:
    if password_stdin or not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
        for ending in (b"\r\n", b"\n"):
            if data.endswith(ending):
                return data[: -len(ending)]
        return data
    return getpass.getpass("Password: ").encode("utf-8", "surrogateescape")


def verify(config_arg: str | None, user: str, *, password_stdin: bool = False, remote_ip: str = "") -> int:
    """``ncauth verify``: authenticate once and explain every step."""
    sys.stderr.write(f"ncauth verify {user!r}\n")
    return _decide(config_arg, user, authenticate=True, password_stdin=password_stdin, remote_ip=remote_ip)


def lookup(config_arg: str | None, user: str) -> int:
    """``ncauth lookup``: does the user exist, and with which userdb fields."""
    return _decide(config_arg, user, authenticate=False)


def _decide(
    config_arg: str | None,
    user: str,
    *,
    authenticate: bool,
    password_stdin: bool = False,
    remote_ip: str = "",
) -> int:
    """One traced decision (with a password when *authenticate*), fields on stdout."""
    trace = _Tracer(sys.stderr)
    config = _load(config_arg, trace)

    from ncauth.outcome import Outcome
    from ncauth.policy import Authenticator

    auth = Authenticator(config)
    try:
        auth.store.prepare()  # a missing driver or database file: said before the password is asked
        password = _read_password(password_stdin) if authenticate else None
        if password is not None:
            trace("password", f"{len(password)} bytes read" + (" (empty)" if not password else ""))
        started = time.perf_counter()
        if password is None:
            verdict = auth.lookup(user, trace=trace)
        else:
            verdict = auth.authenticate(user, password, remote_ip=remote_ip, trace=trace)
    finally:
        auth.store.close()
    trace(
        "verdict",
        f"{verdict.outcome.name}: {verdict.reason}"
        + (" (disabled in Nextcloud)" if verdict.disabled else ""),
    )
    trace("time", f"{(time.perf_counter() - started) * 1000:.0f} ms")
    if verdict.ok:
        _print_fields(verdict.user, verdict.fields)
    return {
        Outcome.OK: EX_OK,
        Outcome.REFUSED: EX_NOPERM,
        Outcome.UNKNOWN: EX_NOUSER,
        Outcome.TEMPFAIL: EX_TEMPFAIL,
    }[verdict.outcome]


def _print_fields(user: str, fields: Mapping[str, str]) -> None:
    sys.stdout.write(f"user={user}\n")
    for key, value in fields.items():
        sys.stdout.write(f"{key}={value}\n")


def _load_quiet(config_arg: str | None) -> Config:
    from ncauth import config as config_mod
    from ncauth.store import parse_url

    config = config_mod.load(config_mod.config_path(config_arg))
    for url in config.nextcloud.database_urls:
        parse_url(url)
    return config


def _write_private(path: Path, text: str, mode: int) -> None:
    """Create or replace *path* with *mode* from the start (no umask window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _check_output(path: Path) -> None:
    """Raise CannotWrite, saying what to change, when *path* cannot become a file."""
    if path.is_dir():
        raise CannotWrite(
            f"cannot write {path}: it is a directory (give a file name, e.g. {path / 'ncauth.conf.ext'})"
        )
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise CannotWrite(f"cannot write {path}: {path.parent} {what}")


def dovecot_config(args: argparse.Namespace) -> int:
    """``ncauth dovecot-config``: the snippet for one mode and Dovecot version."""
    from ncauth import dovecot

    config = _load_quiet(args.config)
    version = args.dovecot or dovecot.detect_version()
    postfix = dovecot.Postfix(args.postfix_socket, args.postfix_user, args.postfix_group)
    output = Path(args.output).resolve() if args.output else None
    directory = output.parent if output else Path("/etc/dovecot")
    snip = dovecot.snippet(
        config,
        args.mode,
        version,
        postfix,
        str(directory / dovecot.SQL_ARGS_NAME),
        str(directory / dovecot.LUA_NAME),
    )
    if output is None:
        sys.stdout.write(snip.text)
        if snip.sql_args or snip.lua:
            sys.stderr.write(
                f"ncauth: this snippet reads {snip.sql_args_path or snip.lua_path}; write both files "
                "with --output /etc/dovecot/conf.d/ncauth.conf.ext\n"
            )
        return EX_OK
    files = [(output, snip.text, 0o600 if snip.has_secret else 0o644)]
    if snip.sql_args:  # holds the database password
        files.append((Path(snip.sql_args_path), snip.sql_args, 0o600))
    if snip.lua:
        files.append((Path(snip.lua_path), snip.lua, 0o644))
    for path, _, _ in files:  # all checked before any is written: no half-written pair
        _check_output(path)
    for path, text, mode in files:
        try:
            _write_private(path, text, mode)
        except OSError as exc:
            raise CannotWrite(f"cannot write {path}: {exc.strerror}") from None
    sys.stderr.write("ncauth: wrote " + " and ".join(str(path) for path, _, _ in files) + "\n")
    return EX_OK


def sql(args: argparse.Namespace) -> int:
    """``ncauth sql``: the SQL passdb queries and the grants of both database users."""
    import sqlalchemy as sa

    from ncauth import sqlgen

    config = _load_quiet(args.config)
    url = config.nextcloud.database_urls[0]
    dialect = args.dialect or sqlgen.dialect_of(url)
    database = args.database or sa.engine.make_url(url).database or "nextcloud"
    text = sqlgen.report(
        config,
        dialect,
        args.dovecot,
        database,
        dovecot_user=args.dovecot_user,
        ncauth_user=args.ncauth_user,
        host=args.host,
    )
    sys.stdout.write(text)
    return EX_OK


def postfix_config(config_arg: str | None, *, direct: bool) -> int:
    """``ncauth postfix-config``: the main.cf lines (docs/postfix.md; README "One account list" sums it up)."""
    from ncauth import postfix

    sys.stdout.write(postfix.main_cf(_load_quiet(config_arg), direct=direct))
    return EX_OK


def nextcloud_mail(args: argparse.Namespace) -> int:
    """``ncauth nextcloud-mail``: the Mail app's provisioning for the configured ``match``."""
    import socket

    from ncauth.nextcloud_mail import Endpoints, command

    imap_host = args.imap_host or socket.getfqdn()
    endpoints = Endpoints(
        imap_host,
        args.smtp_host or imap_host,
        args.imap_port,
        args.imap_ssl_mode,
        args.smtp_port,
        args.smtp_ssl_mode,
    )
    sys.stdout.write(command(_load_quiet(args.config), endpoints, args.occ))
    return EX_OK


def status(config_arg: str | None) -> int:
    """``ncauth status``: ask the daemon for its counters."""
    from ncauth import client

    config = _load_quiet(config_arg)
    if not config.daemon.socket:
        raise ConfigError(f"{config.path}: [daemon] socket is not set")
    try:
        answer = client.request(
            config.daemon.socket, "STATS", connect_timeout=config.daemon.connect_timeout, reply_timeout=5
        )
    except client.DaemonUnavailable as exc:
        raise TemporaryFailure(f"daemon not answering: {exc}") from None
    for key, value in answer.fields.items():
        sys.stdout.write(f"{key}={value}\n")
    return EX_OK


def users(config_arg: str | None) -> int:
    """``ncauth users``: the accounts Dovecot would iterate (``doveadm -A``), for scripts
    and for checkpassword set-ups, where Dovecot itself cannot iterate."""
    from ncauth.policy import Authenticator

    auth = Authenticator(_load_quiet(config_arg))
    try:
        names = auth.accounts()
    finally:
        auth.store.close()
    sys.stdout.write("".join(f"{name}\n" for name in names))
    return EX_OK
