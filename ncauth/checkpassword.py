"""Dovecot 2.3's checkpassword protocol (``passdb/userdb { driver = checkpassword }``).

Dovecot writes ``user NUL password NUL NUL`` to fd 3 and reads ``key=value`` fields
from fd 4; the exit status is the verdict (Dovecot's src/auth/db-checkpassword.c, checkpassword-reply.c):

* 0  authenticated (fields on fd 4, always ``user=`` first)
* 1  wrong password, unknown or refused user - and nothing else
* 2 / 3  lookup mode (``AUTHORIZED=1``): user found (fields on fd 4) / unknown
* 111  anything else: bad config, database down, timeout, protocol error, a bug

Dovecot reports a Python crash (exit 1) as "wrong password", so everything below
``main`` is wrapped to end in 111. Only the standard library and ncauth's own
stdlib-only modules are imported at module level; the database and hashing
libraries are imported inside, so their absence is a temporary failure as well.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from types import FrameType

from ncauth.errors import ConfigError, NcauthError
from ncauth.outcome import Outcome

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~8 ms on every login)
if TYPE_CHECKING:
    import logging

    from ncauth.config import Config

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_FOUND = 2
EXIT_UNKNOWN = 3
EXIT_TEMPFAIL = 111

MAX_REQUEST = 512  # CHECKPASSWORD_MAX_REQUEST_LEN in Dovecot
READ_TIMEOUT = 10.0  # Dovecot writes fd 3 at once; waiting longer helps nobody
DEADLINE = 25  # seconds for the whole run; Dovecot itself never kills us


NUL = b"\0"

#: (authentication, lookup) exit status of each outcome: the one place they are mapped
_EXIT_STATUS = {
    Outcome.OK: (EXIT_OK, EXIT_FOUND),
    Outcome.REFUSED: (EXIT_REFUSED, EXIT_UNKNOWN),
    Outcome.UNKNOWN: (EXIT_REFUSED, EXIT_UNKNOWN),
    Outcome.TEMPFAIL: (EXIT_TEMPFAIL, EXIT_TEMPFAIL),
}


def exit_status(outcome: Outcome, lookup: bool) -> int:
    """Dovecot's reading of an exit status: 1 is "wrong password" and nothing else."""
    return _EXIT_STATUS[outcome][lookup]


class ProtocolError(NcauthError):
    """fd 3 did not carry a checkpassword request."""


def read_request(fd: int = 3, timeout: float = READ_TIMEOUT) -> tuple[bytes, bytes]:
    """(user, password) from *fd*: read until three NUL-terminated fields are in,
    never until EOF (a sibling child may hold the pipe's write end open)."""
    buf = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while buf.count(NUL) < 3:
        if len(buf) >= MAX_REQUEST:
            raise ProtocolError(f"no three NUL-terminated fields in the first {MAX_REQUEST} bytes")
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise ProtocolError(f"fd {fd}: timed out after {len(buf)} bytes")
        chunk = os.read(fd, MAX_REQUEST - len(buf))
        if not chunk:
            raise ProtocolError(f"fd {fd}: input ended after {len(buf)} bytes, {buf.count(NUL)} of 3 fields")
        buf += chunk
    # Anything after the third NUL is not part of this request and is ignored.
    user, password, _timestamp = buf.split(NUL, 3)[:3]
    return user, password


def reply_fields(user: str, userdb: Mapping[str, str]) -> list[tuple[str, str]]:
    """The reply: the canonical user first, then ``userdb_<key>`` fields."""
    return [("user", user), *((f"userdb_{k}", v) for k, v in userdb.items())]


def encode_fields(fields: Iterable[tuple[str, str]]) -> str:
    """``key=value`` pairs, tab-escaped and TAB-separated, as Dovecot reads them from fd 4."""
    from ncauth.protocol import tab_escape

    return "\t".join(f"{tab_escape(k)}={tab_escape(v)}" for k, v in fields)


def write_reply(fields: list[tuple[str, str]], fd: int = 4) -> None:
    """Write the TAB-separated, tab-escaped fields to *fd* and close it."""
    data = encode_fields(fields).encode("utf-8", "surrogateescape")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.close(fd)


def option_argument(argv: list[str], name: str) -> str | None:
    """``NAME VALUE`` / ``NAME=VALUE`` from argv. Other arguments, such as the
    checkpassword-reply path Dovecot appends, are ignored."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def config_argument(argv: list[str]) -> str | None:
    """``--config PATH`` / ``--config=PATH`` from argv."""
    return option_argument(argv, "--config")


class DeadlineExceeded(BaseException):
    """The whole run took too long. A BaseException, so that no ``except OSError``
    on the way (a socket wait for the daemon, a database driver) can take it for an
    ordinary timeout and carry on: main() turns it into exit 111."""


def _deadline(signum: int, frame: FrameType | None) -> None:
    raise DeadlineExceeded(f"no verdict within {DEADLINE} s")


def _watchdog(seconds: float) -> None:
    """End the process with 111 after *seconds*, even while the main thread is inside
    argon2 or bcrypt: those release the GIL but never return to Python, so SIGALRM's
    handler would wait for them. A thread that calls ``os._exit`` does not."""
    import threading

    def give_up() -> None:
        try:
            os.write(2, f"ncauth: no verdict within {seconds:g} s: temporary failure\n".encode())
        finally:
            os._exit(EXIT_TEMPFAIL)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()


def _logger(environ: Mapping[str, str], level: str = "info") -> logging.Logger:
    """ncauth's logger, set up on first use: a relayed answer logs nothing here (the
    daemon logged the decision), so that path never imports ``logging``."""
    from ncauth import log

    log.setup(level, dovecot="LOG_SERVICE" in environ)
    return log.logger


def _relay(
    environ: Mapping[str, str],
    level: str,
    path: str,
    timeouts: tuple[float, float],
    login: str,
    password: bytes,
    lookup: bool,
    extra: dict[str, str],
) -> int | Exception:
    """The daemon's verdict as an exit status (its fields written to fd 4), or why no
    daemon is there to ask (DaemonUnavailable: the caller decides what then)."""
    from ncauth import client
    from ncauth.protocol import Request

    req = (
        Request("LOOKUP", "1", login, None, extra) if lookup else Request("AUTH", "1", login, password, extra)
    )
    try:
        answer = client.ask(path, req, *timeouts)
    except client.DaemonUnavailable as exc:
        return exc
    # The daemon logged the decision; this process only relays it.
    outcome = Outcome.from_wire(answer.verdict)
    if outcome is Outcome.TEMPFAIL and not answer.from_daemon:
        _logger(environ, level).warning("temporary failure: %s", answer.fields.get("reason", ""))
    if outcome is not Outcome.OK:
        return exit_status(outcome, lookup)
    user = answer.fields.pop("user", "")
    if not user:
        _logger(environ, level).error("daemon answered OK without a user: temporary failure")
        return EXIT_TEMPFAIL
    write_reply([("user", user), *answer.fields.items()])
    return exit_status(outcome, lookup)


def _load(argv: list[str], environ: Mapping[str, str]) -> Config | None:
    """The config, or None after logging why not (the caller answers 111)."""
    from ncauth import config as config_mod

    try:
        return config_mod.load(config_mod.config_path(config_argument(argv), dict(environ)))
    except NcauthError as exc:
        _logger(environ).error("config error: %s", exc)
        return None


def _named_daemon(argv: list[str], path: str) -> tuple[str, tuple[float, float]]:
    """The daemon ``--socket`` names, with the timeouts given beside it."""
    from ncauth import client

    return path, (
        _seconds(argv, "--connect-timeout", client.CONNECT_TIMEOUT),
        _seconds(argv, "--reply-timeout", client.REPLY_TIMEOUT),
    )


def _configured_daemon(config: Config | None) -> tuple[str, tuple[float, float]] | None:
    """The daemon the config says to ask first (its socket and timeouts), if any."""
    if config is None or not config.daemon.socket or config.daemon.forward == "never":
        return None
    return config.daemon.socket, (config.daemon.connect_timeout, config.daemon.reply_timeout)


def _seconds(argv: list[str], name: str, default: float) -> float:
    value = option_argument(argv, name)
    return default if value is None else float(value)


def run(argv: list[str], environ: Mapping[str, str]) -> int:
    """One checkpassword invocation; returns the exit status.

    With ``--socket PATH`` (what ``ncauth dovecot-config`` writes when a daemon is
    configured) the request goes to that daemon before the config is even read: a relayed
    login then costs a Python start, a socket and ncauth's stdlib modules, no TOML parse.
    Only when no daemon answers is the config read, and it decides what happens next."""
    relay = option_argument(argv, "--socket")
    config = None if relay else _load(argv, environ)
    if relay is None and config is None:
        return EXIT_TEMPFAIL
    level = config.log_level if config is not None else "info"

    try:
        user_raw, password = read_request()
    except (ProtocolError, OSError) as exc:
        _logger(environ, level).error("checkpassword request: %s", exc)
        return EXIT_TEMPFAIL

    lookup = environ.get("AUTHORIZED") == "1"
    if lookup and environ.get("CREDENTIALS_LOOKUP") == "1" and environ.get("SCHEME"):
        from ncauth.log import printable

        _logger(environ, level).error(
            "Dovecot asked for %s credentials: ncauth only checks plaintext passwords "
            "(set auth_mechanisms = plain login)",
            printable(environ["SCHEME"], 32),
        )
        return EXIT_TEMPFAIL

    service = environ.get("SERVICE", "")
    remote_ip = environ.get("TCPREMOTEIP") or environ.get("REMOTE_IP", "")
    if level == "debug":
        from ncauth.log import printable

        _logger(environ, level).debug(
            "request: login=\"%s\" password=%d bytes service=%s rip=%s%s",
            printable(user_raw.decode("utf-8", "backslashreplace")),
            len(password),
            printable(service, 32),
            printable(remote_ip, 64),
            " (lookup)" if lookup else "",
        )
    # Undecodable bytes survive as surrogates, which parse_login refuses by name.
    login = user_raw.decode("utf-8", "surrogateescape")
    started = time.perf_counter()

    target = _named_daemon(argv, relay) if relay is not None else _configured_daemon(config)
    if target is not None:
        extra = {k: v for k, v in (("service", service), ("rip", remote_ip)) if v}
        relayed = _relay(environ, level, *target, login, password, lookup, extra)
        if isinstance(relayed, int):
            return relayed
        if config is None:  # no daemon answered: now the config decides
            config = _load(argv, environ)
            if config is None:
                return EXIT_TEMPFAIL
            configured = _configured_daemon(config)
            if configured is not None and configured[0] != target[0]:
                # a stale --socket (the snippet predates a move): the configured daemon decides
                relayed = _relay(environ, config.log_level, *configured, login, password, lookup, extra)
                if isinstance(relayed, int):
                    return relayed
        if config.daemon.forward == "always":
            _logger(environ, config.log_level).error(
                "daemon unavailable (%s); [daemon] forward = \"always\": temporary failure", relayed
            )
            return EXIT_TEMPFAIL
        _logger(environ, config.log_level).warning("daemon unavailable (%s): deciding in-process", relayed)

    assert config is not None
    from ncauth import log, oneshot
    from ncauth.policy import Authenticator

    logger = _logger(environ, config.log_level)
    _watchdog(DEADLINE + 1)  # a backstop behind SIGALRM, for the slow hash itself
    try:
        # one decision: the driver alone where it reads exactly as SQLAlchemy would
        auth = Authenticator(config, oneshot.store_for(config.nextcloud))
    except NcauthError as exc:
        logger.error("config error: %s", exc)
        return EXIT_TEMPFAIL
    try:
        verdict = auth.lookup(login) if lookup else auth.authenticate(login, password, remote_ip=remote_ip)
    except ConfigError as exc:  # found on first use: a missing database driver or SQLite file
        log.logger.error("config error: %s", exc)
        return EXIT_TEMPFAIL
    finally:
        auth.store.close()

    log.verdict(
        verdict,
        login=login,
        ms=(time.perf_counter() - started) * 1000,
        service=service,
        remote_ip=remote_ip,
        via="checkpassword",
    )
    if verdict.ok:
        write_reply(reply_fields(verdict.user, verdict.fields))
    return exit_status(verdict.outcome, lookup)


HELP = """\
usage: ncauth-checkpassword [--config PATH] [--socket PATH [--connect-timeout S] [--reply-timeout S]]
                            [REPLY-PROGRAM]

Dovecot 2.3's checkpassword program for ncauth: Dovecot runs it for each login, with
the login on file descriptor 3, and reads the verdict from its exit status (0 ok,
1 wrong password or unknown user, 2/3 lookup found/unknown, 111 temporary failure).
It is not meant to be run by hand: to try a login, run
  ncauth verify USER          (as the user Dovecot runs it as: runuser -u dovecot -- ncauth verify USER)
and to print the Dovecot snippet that runs it, ncauth dovecot-config --mode checkpassword.

  --config PATH  configuration file (default: $NCAUTH_CONFIG, else /etc/ncauth/ncauth.toml)
  --socket PATH  ask the daemon at PATH before reading the config (ncauth dovecot-config
                 writes it when [daemon] socket is set); the config is read, and decides,
                 only when no daemon answers there
  --connect-timeout S, --reply-timeout S
                 how long to wait for that daemon (default 0.5 s and 10 s)
"""

#: what a person who runs the program by hand is told on stderr
BY_HAND = (
    "ncauth-checkpassword: file descriptor 3 is not open: Dovecot runs this program (see --help); "
    "to try a login, run: ncauth verify USER\n"
)


def _by_hand(argv: list[str]) -> int | None:
    """When fd 3 is not open, nobody speaks the protocol: a person ran the program.
    Answer --help or --version (exit 0), else say what to run instead (111: still
    "temporary failure", should Dovecot ever run it like this). None: fd 3 is open,
    and whatever the arguments, the protocol runs (a --help in Dovecot's args must
    never turn into exit 0, "authenticated")."""
    try:
        os.fstat(3)
        return None
    except OSError:
        pass
    if "-h" in argv or "--help" in argv or "--version" in argv:
        from ncauth import __version__

        sys.stdout.write(HELP if "--version" not in argv else f"ncauth-checkpassword {__version__}\n")
        sys.stdout.flush()  # main() ends with os._exit, which flushes nothing
        return EXIT_OK
    sys.stderr.write(BY_HAND)
    return EXIT_TEMPFAIL


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ncauth-checkpassword``: never lets an error become exit 1."""
    code = EXIT_TEMPFAIL
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        by_hand = _by_hand(args)
        if by_hand is None:
            signal.signal(signal.SIGALRM, _deadline)
            signal.alarm(DEADLINE)
            code = run(args, os.environ)
        else:
            code = by_hand
    except BaseException as exc:
        try:
            sys.stderr.write(f"ncauth: internal error, temporary failure: {type(exc).__name__}: {exc}\n")
        except BaseException:  # noqa: S110 - stderr itself may be gone; the exit code still tells Dovecot
            pass
        code = EXIT_TEMPFAIL
    finally:
        signal.alarm(0)
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)
