"""Loading and checking ncauth's TOML configuration (README.md, "Configuration").

Every error names the file and the key, unknown keys are errors (a typo must not
silently fall back to a default in an auth component), and a file that holds a
secret is refused when other users can read it, as ssh does with private keys.
This module imports only the standard library, and little of it: the checkpassword
fast path reads the config before it decides whether heavy modules are needed at all.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ncauth import carry, names
from ncauth.errors import ConfigError

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ncauth.records import NamedTuple  # typing's, without its start-up cost

if TYPE_CHECKING:
    import ipaddress

    from ncauth import phpconfig

    Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Imports of modules that only some configurations need (ipaddress, json, subprocess,
# shutil, posixpath) are done where they are used: checkpassword's relay to the daemon
# starts a Python for every login, and each import costs milliseconds there.

DEFAULT_PATH = "/etc/ncauth/ncauth.toml"
MATCH_MODES = ("local-part", "address", "email")
TWO_FACTOR_MODES = ("app-password-only", "allow-login-password")
FORWARD_MODES = ("auto", "always", "never")
LOG_LEVELS = ("debug", "info", "warning", "error")
USERDB_PLACEHOLDERS = ("user", "local", "domain", "uid", "quota_bytes")
#: The placeholder that costs a query of its own (ncauth.quota): filled only where a value uses it.
QUOTA_PLACEHOLDER = "quota_bytes"


class Hashing(NamedTuple):
    """Argon2 parameters for the decoy work done for unknown users, so that they
    cost what a real check costs (Nextcloud's hashingMemoryCost & co.)."""

    memory_cost: int = 65536
    time_cost: int = 4
    threads: int = 1


class HashLimits(NamedTuple):
    """The most work one stored hash may ask for. A hash row above these is refused
    (with its reason logged), never run: a row with t=20000000 or m=1 GiB or bcrypt
    cost 31 would otherwise hold a worker for hours or take gigabytes. Defaults sit
    well above Nextcloud's (m=65536 KiB, t=4, p=1; bcrypt cost 10): the worst hash
    they admit takes about 6 s in libsodium on one core here."""

    argon2_memory_cost: int = 262144  # KiB (256 MiB)
    argon2_time_cost: int = 64
    argon2_threads: int = 8
    bcrypt_cost: int = 14


class NextcloudSection(NamedTuple):
    database_urls: tuple[str, ...]
    table_prefix: str = "oc_"
    secret: str = ""
    password_salt: str = ""
    connect_timeout: float = 5.0
    query_timeout: float = 5.0
    hashing: Hashing = Hashing()
    limits: HashLimits = HashLimits()
    #: seconds a database URL that failed is skipped in favour of the next one
    failover_retry: float = 30.0


class AccountsSection(NamedTuple):
    domains: tuple[str, ...] = ()
    default_domain: str = ""
    match: str = "local-part"
    two_factor: str = "app-password-only"
    trusted_networks: tuple[Network, ...] = ()
    app_passwords: bool = True
    #: match = "email": also trust addresses that users may have set for themselves
    trust_user_emails: bool = False
    #: Nextcloud's token_auth_enforced: login passwords never work, only app passwords.
    app_password_required: bool = False
    #: Nextcloud's twofactor_enforced* system settings (config.php, not the database).
    two_factor_enforced: bool = False
    two_factor_enforced_groups: tuple[str, ...] = ()
    two_factor_enforced_excluded_groups: tuple[str, ...] = ()
    #: only members of one of these Nextcloud groups have a mailbox (empty: every user)
    groups: tuple[str, ...] = ()

    def serves(self, domain: str) -> bool:
        """Is *domain* (lower case) one of ``domains``?"""
        return domain in self.domains or self.domains == (ANY_DOMAIN,)


class DaemonSection(NamedTuple):
    socket: str = ""
    #: checkpassword: "auto" asks the daemon and falls back to working in-process when it
    #: does not answer; "always" temp-fails instead; "never" does not ask.
    forward: str = "auto"
    connect_timeout: float = 0.5
    reply_timeout: float = 10.0
    socket_group: str = ""
    allowed_users: tuple[str, ...] = ("root", "dovecot")
    workers: int = 0  # 0 = one per CPU
    queue: int = 64
    #: open connections one peer uid may hold (each Dovecot auth worker or checkpassword
    #: child holds one; a runaway or hostile local client cannot exhaust the daemon's fds)
    peer_connections: int = 256
    idle_timeout: float = 30.0
    drain_timeout: float = 15.0
    cache: bool = True
    cache_size: int = 10000
    cache_max_age: float = 3600.0
    throttle: bool = True
    throttle_window: float = 300.0
    throttle_ip_failures: int = 20
    throttle_user_failures: int = 10
    #: IPv6 clients are counted per network of this prefix length (one host usually has a /64)
    throttle_ipv6_prefix: int = 64
    #: sources spared the per-IP budget (never the per-account one): e.g. a webmail host that
    #: relays many users' logins. Empty by default: trusted_networks alone spares nothing here.
    throttle_exempt_networks: tuple[Network, ...] = ()


class PostfixSection(NamedTuple):
    """The daemon's second listener: Postfix's socketmap lookups (``ncauth.socketmap``)."""

    socket: str = ""  # empty: no Postfix maps
    socket_group: str = "postfix"
    allowed_users: tuple[str, ...] = ("postfix",)


class Config(NamedTuple):
    path: str
    nextcloud: NextcloudSection
    accounts: AccountsSection = AccountsSection()
    userdb: Mapping[str, str] = MappingProxyType({})
    daemon: DaemonSection = DaemonSection()
    log_level: str = "info"
    postfix: PostfixSection = PostfixSection()

    def uses_placeholder(self, name: str) -> bool:
        """Does some ``[userdb]`` value use ``{name}``? (``{quota_bytes}`` costs a query.)"""
        return any(name in PLACEHOLDER_RE.findall(value) for value in self.userdb.values())


def config_path(explicit: str | None = None, environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """``--config`` wins, then ``$NCAUTH_CONFIG``, then the system default."""
    env = os.environ if environ is None else environ
    return explicit or env.get("NCAUTH_CONFIG") or DEFAULT_PATH


def load(path: str) -> Config:
    """Read, validate and return the configuration at *path*."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (give --config PATH or set NCAUTH_CONFIG)") from None
    except PermissionError:
        raise ConfigError(
            f"{path}: permission denied for uid {os.getuid()} (Dovecot 2.3 runs checkpassword "
            "as user 'dovecot': make the file root:dovecot 0640)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 only; a Latin-1 editor's file lands here
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} on line {line}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(raw, path, mode=st.st_mode)


def parse(raw: dict[str, Any], path: str, *, mode: int | None = None) -> Config:
    """Validate a decoded TOML document; *mode* (st_mode) enables the permission checks."""
    r = _Reader(path)
    r.only_keys("", raw, ("nextcloud", "accounts", "userdb", "daemon", "log", "postfix"))
    nc = r.table(raw, "nextcloud", required=True)
    accounts = r.table(raw, "accounts")
    userdb = r.table(raw, "userdb")
    daemon = r.table(raw, "daemon")
    log = r.table(raw, "log")
    postfix = r.table(raw, "postfix")

    if mode is not None:  # before anything else: an unsafe file is the first thing to fix
        _check_mode(path, mode, holds_secret=_holds_secret(nc))
    config_php = r.string("nextcloud", nc, "config_php")
    php = read_config_php(config_php) if config_php else None
    config = Config(
        path=path,
        nextcloud=_nextcloud(r, nc, php.settings if php else None, config_php),
        accounts=_accounts(r, accounts, php),
        userdb=_userdb(r, userdb),
        daemon=_daemon(r, daemon),
        log_level=r.choice("log", log, "level", LOG_LEVELS, Config._field_defaults["log_level"]),
        postfix=_postfix(r, postfix),
    )
    r.only_keys("log", log, ("level",))
    return config


def _holds_secret(nc: dict[str, Any]) -> bool:
    """Could this ``[nextcloud]`` table hold a secret? For database URLs this errs on the
    side of yes: a password sits in the user info wherever SQLAlchemy's URL grammar puts
    one (``user:password@``, the password being anything up to the next ``@``, so ``#``,
    ``/`` and ``?`` in it defeat ``urllib``), or in the query (``?password=``,
    ``?passwd=``: any "pass" counts). The full parse needs SQLAlchemy, which this module
    must not import (checkpassword's relay path reads the config too)."""
    if nc.get("secret") or nc.get("password_salt"):
        return True
    urls = nc.get("database_url", [])
    for url in [urls] if isinstance(urls, str) else urls:
        if isinstance(url, str) and (_URL_PASSWORD.match(url) or "pass" in url.lower()):
            return True
    return False


#: SQLAlchemy's URL grammar (sqlalchemy.engine.url._parse_url): ``name://user:password@``
_URL_PASSWORD = re.compile(r"[^:]*://[^:/]*:[^@]*@")


def _check_mode(path: str, mode: int, *, holds_secret: bool) -> None:
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        # whoever may write it may point ncauth at a database of their own, and log in as anyone
        who = "every user" if mode & stat.S_IWOTH else "its group"
        raise ConfigError(
            f"{path}: writable by {who} (mode {stat.S_IMODE(mode):04o}); run: chmod go-w {path}"
        )
    if holds_secret and mode & stat.S_IROTH:
        raise ConfigError(
            f"{path}: holds a database password or Nextcloud secret but is readable by every user "
            f"(mode {stat.S_IMODE(mode):04o}); run: chown root:dovecot {path} && chmod 0640 {path}"
        )


class _Reader:
    """Typed access to one TOML document that names file and key in every error."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        where = f"[{section}] {key}" if section else key
        return ConfigError(f"{self.path}: {where}: {problem}")

    def only_keys(self, section: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(section, key, f"unknown key (known: {', '.join(allowed)})")

    def table(self, raw: dict[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
        value = raw.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{self.path}: [{name}]: section missing")
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: {name}: must be a table ([{name}])")
        return value

    def string(self, section: str, table: dict[str, Any], key: str, default: str = "") -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.fail(section, key, f"must be a string, not {type(value).__name__}")
        return value

    def number(
        self, section: str, table: dict[str, Any], key: str, default: float, *, lo: float, hi: float
    ) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(section, key, f"must be a number, not {type(value).__name__}")
        if not lo <= value <= hi:
            raise self.fail(section, key, f"must be between {lo:g} and {hi:g}")
        return value

    def boolean(self, section: str, table: dict[str, Any], key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(section, key, "must be true or false")
        return value

    def strings(self, section: str, table: dict[str, Any], key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(section, key, "must be a list of strings")
        return tuple(value)

    def choice(
        self, section: str, table: dict[str, Any], key: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = self.string(section, table, key, default)
        if value not in choices:
            raise self.fail(section, key, f"{value!r} is not one of: {', '.join(choices)}")
        return value


def _nextcloud(
    r: _Reader, nc: dict[str, Any], php: phpconfig.NextcloudSettings | None, config_php: str
) -> NextcloudSection:
    sec = "nextcloud"
    r.only_keys(
        sec,
        nc,
        (
            "database_url",
            "table_prefix",
            "secret",
            "password_salt",
            "config_php",
            "connect_timeout",
            "query_timeout",
            "hashing_memory_cost",
            "hashing_time_cost",
            "hashing_threads",
            "failover_retry",
            "max_argon2_memory_cost",
            "max_argon2_time_cost",
            "max_argon2_threads",
            "max_bcrypt_cost",
        ),
    )
    if "database_url" in nc:
        urls_raw = nc["database_url"]
        urls = (urls_raw,) if isinstance(urls_raw, str) else r.strings(sec, nc, "database_url")
        if not urls or not all(urls):
            raise r.fail(sec, "database_url", "must not be empty")
    elif php:
        urls = (database_url_from_php(php, config_php),)
    else:
        raise r.fail(
            sec, "database_url", "missing (or set config_php to read it from Nextcloud's config.php)"
        )
    for url in urls:
        if "://" not in url:
            raise r.fail(sec, "database_url", "not a URL (e.g. mysql+pymysql://user:pw@host/nextcloud)")

    n, h = NextcloudSection._field_defaults, Hashing()
    prefix = r.string(sec, nc, "table_prefix", php.dbtableprefix if php else n["table_prefix"])
    if not TABLE_PREFIX_RE.fullmatch(prefix):
        raise r.fail(sec, "table_prefix", "may only contain letters, digits and '_'")

    d = HashLimits()
    limits = HashLimits(
        argon2_memory_cost=int(
            r.number(sec, nc, "max_argon2_memory_cost", d.argon2_memory_cost, lo=8, hi=4 * 1024 * 1024)
        ),
        argon2_time_cost=int(r.number(sec, nc, "max_argon2_time_cost", d.argon2_time_cost, lo=1, hi=10000)),
        argon2_threads=int(r.number(sec, nc, "max_argon2_threads", d.argon2_threads, lo=1, hi=255)),
        bcrypt_cost=int(r.number(sec, nc, "max_bcrypt_cost", d.bcrypt_cost, lo=4, hi=31)),
    )
    # each bounded by its limit above: the decoy must never cost more than a hash may
    defaults = (php.hashing_memory_cost, php.hashing_time_cost, php.hashing_threads) if php else tuple(h)
    highest = (limits.argon2_memory_cost, limits.argon2_time_cost, limits.argon2_threads)
    hashing = Hashing(
        *(
            int(r.number(sec, nc, f"hashing_{name}", default, lo=lo, hi=hi))
            for name, default, lo, hi in zip(Hashing._fields, defaults, (8, 1, 1), highest, strict=True)
        )
    )
    return NextcloudSection(
        database_urls=urls,
        table_prefix=prefix,
        secret=r.string(sec, nc, "secret", php.secret if php else n["secret"]),
        password_salt=r.string(sec, nc, "password_salt", php.passwordsalt if php else n["password_salt"]),
        connect_timeout=r.number(sec, nc, "connect_timeout", n["connect_timeout"], lo=0.1, hi=60),
        query_timeout=r.number(sec, nc, "query_timeout", n["query_timeout"], lo=0.1, hi=60),
        hashing=hashing,
        limits=limits,
        failover_retry=r.number(sec, nc, "failover_retry", n["failover_retry"], lo=0, hi=3600),
    )


#: ``[accounts] domains = ["*"]``: any domain, an explicit choice for match = "address" only.
ANY_DOMAIN = "*"


def _accounts(r: _Reader, acc: dict[str, Any], php: NextcloudPhp | None) -> AccountsSection:
    sec = "accounts"
    r.only_keys(
        sec,
        acc,
        (
            "domains",
            "default_domain",
            "match",
            "two_factor",
            "trusted_networks",
            "app_passwords",
            "app_password_required",
            "two_factor_enforced",
            "two_factor_enforced_groups",
            "two_factor_enforced_excluded_groups",
            "trust_user_emails",
            "groups",
        ),
    )
    a = AccountsSection()
    match = r.choice(sec, acc, "match", MATCH_MODES, a.match)
    trust_user_emails = r.boolean(sec, acc, "trust_user_emails", a.trust_user_emails)
    if match == "email" and not trust_user_emails:
        problem = (
            emails_unlocked(php.data)
            if php
            else (
                "[nextcloud] config_php is not set, so ncauth cannot tell "
                "whether users may change their own address"
            )
        )
        if problem:
            raise r.fail(
                sec,
                "match",
                f'"email" logs users in by the address Nextcloud has for them, but {problem}: '
                "one who sets hers to another person's address would get that person's mail. "
                "Lock it in Nextcloud (occ "
                "config:system:set allow_user_to_change_email --type=boolean --value=false) and set "
                "config_php, or accept the risk with trust_user_emails = true (see README)",
            )
    domains = tuple(d.lower() for d in r.strings(sec, acc, "domains"))
    if not domains:
        raise r.fail(
            sec,
            "domains",
            "missing: list the mail domains this server serves, e.g. "
            'domains = ["example.org"] (logins in other domains are unknown users)',
        )
    if ANY_DOMAIN in domains:
        if match != "address" or len(domains) > 1:
            raise r.fail(
                sec,
                "domains",
                '"*" (any domain) is only for match = "address", alone: there the '
                "Nextcloud uid names its own domain",
            )
    else:
        for d in domains:
            if not names.is_domain(d):
                raise r.fail(
                    sec,
                    "domains",
                    f"{d!r} is not a domain name (ASCII letters, digits, '-' and dots; "
                    "IDNA names in their xn-- form)",
                )
    default_domain = r.string(sec, acc, "default_domain").lower()
    if default_domain and not names.is_domain(default_domain):
        raise r.fail(sec, "default_domain", f"{default_domain!r} is not a domain name")
    if default_domain and ANY_DOMAIN not in domains and default_domain not in domains:
        raise r.fail(sec, "default_domain", f"{default_domain!r} is not one of [accounts] domains")
    return AccountsSection(
        domains=domains,
        default_domain=default_domain,
        match=match,
        two_factor=r.choice(sec, acc, "two_factor", TWO_FACTOR_MODES, a.two_factor),
        trusted_networks=_networks(r, sec, acc, "trusted_networks"),
        app_passwords=r.boolean(sec, acc, "app_passwords", a.app_passwords),
        trust_user_emails=trust_user_emails,
        app_password_required=r.boolean(
            sec,
            acc,
            "app_password_required",
            php.settings.token_auth_enforced if php else a.app_password_required,
        ),
        two_factor_enforced=r.boolean(
            sec, acc, "two_factor_enforced", php.settings.twofactor_enforced if php else a.two_factor_enforced
        ),
        two_factor_enforced_groups=r.strings(sec, acc, "two_factor_enforced_groups")
        if "two_factor_enforced_groups" in acc or not php
        else php.settings.twofactor_enforced_groups,
        two_factor_enforced_excluded_groups=r.strings(sec, acc, "two_factor_enforced_excluded_groups")
        if "two_factor_enforced_excluded_groups" in acc or not php
        else php.settings.twofactor_enforced_excluded_groups,
        groups=_groups(r, sec, acc),
    )


def _groups(r: _Reader, sec: str, acc: dict[str, Any]) -> tuple[str, ...]:
    """``[accounts] groups``: Nextcloud group ids, compared exactly (``oc_group_user.gid``)."""
    groups = r.strings(sec, acc, "groups")
    for gid in groups:
        if not gid or gid != gid.strip() or carry.problem(gid, "SQL literal"):
            raise r.fail(sec, "groups", f"{gid!r} is not a group id ncauth can compare (no %, $, \\, blanks)")
    return groups


def _networks(r: _Reader, sec: str, table: dict[str, Any], key: str) -> tuple[Network, ...]:
    """A list of CIDR networks, exactly as written: host bits set (``192.0.2.25/8``) are a
    mistake, not a wish to widen, and a network that covers every address is refused."""
    values = r.strings(sec, table, key)
    if not values:
        return ()
    import ipaddress

    networks = []
    for text in values:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
            except ValueError:
                pass
            raise r.fail(sec, key, f"{text!r} is not an IP network in CIDR form ({exc}){hint}") from None
        if net.prefixlen == 0:
            raise r.fail(sec, key, f"{text!r} is every address: name the hosts or networks you mean")
        networks.append(net)
    return tuple(networks)


def emails_unlocked(php: dict[str, Any]) -> str:
    """Why Nextcloud's config.php (as *php*) lets users set their own primary e-mail
    address, or "" when only admins can. Nextcloud 32 reads ``allow_user_to_change_email``
    (``IUser::canChangeEmail``; its migration Version32000Date20250402182800 derives it
    from the display-name switch); before 32, ``allow_user_to_change_display_name``
    locks the e-mail field too (apps/settings UsersController::setUserSettings,
    apps/provisioning_api UsersController::editUser). Only the literal PHP ``false``
    locks it in every reader (editUser compares ``!== false``), so nothing else counts."""
    key = (
        "allow_user_to_change_email"
        if "allow_user_to_change_email" in php
        else "allow_user_to_change_display_name"
    )
    if php.get(key, True) is False:
        return ""
    return f"Nextcloud's config.php does not set {key} to false, so users may change their own address"


#: what ``table_prefix`` may be: it is pasted into SQL text (the SQL passdb), never quoted
TABLE_PREFIX_RE = re.compile(r"[A-Za-z0-9_]*", re.ASCII)
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def _userdb(r: _Reader, userdb: dict[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in userdb.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise r.fail("userdb", key, "field names are lower-case letters, digits and '_'")
        if not isinstance(value, str):
            raise r.fail("userdb", key, f"must be a string, not {type(value).__name__}")
        if why := carry.problem(value, "userdb value"):
            raise r.fail("userdb", key, why)
        for name in PLACEHOLDER_RE.findall(value):
            if name not in USERDB_PLACEHOLDERS:
                raise r.fail(
                    "userdb",
                    key,
                    f"unknown placeholder {{{name}}} (known: "
                    + " ".join(f"{{{p}}}" for p in USERDB_PLACEHOLDERS)
                    + ")",
                )
        if any(c in PLACEHOLDER_RE.sub("", value) for c in "{}"):
            raise r.fail("userdb", key, "unbalanced '{' or '}'")
        if re.search(r"storage=\{" + QUOTA_PLACEHOLDER + r"\}", value):
            # Dovecot 2.3 quota-util.c quota_rule_parse_limits: a bare storage= number is KiB
            raise r.fail(
                "userdb",
                key,
                f"storage={{{QUOTA_PLACEHOLDER}}} would read the byte count as KiB: write "
                f"bytes={{{QUOTA_PLACEHOLDER}}}",
            )
        fields[key] = value
    return fields


def _daemon(r: _Reader, daemon: dict[str, Any]) -> DaemonSection:
    sec = "daemon"
    r.only_keys(
        sec,
        daemon,
        (
            "socket",
            "forward",
            "connect_timeout",
            "reply_timeout",
            "socket_group",
            "allowed_users",
            "workers",
            "queue",
            "peer_connections",
            "idle_timeout",
            "drain_timeout",
            "cache",
            "cache_size",
            "cache_max_age",
            "throttle",
            "throttle_window",
            "throttle_ip_failures",
            "throttle_user_failures",
            "throttle_ipv6_prefix",
            "throttle_exempt_networks",
        ),
    )
    socket_path = r.string(sec, daemon, "socket")
    if socket_path and not socket_path.startswith("/"):
        raise r.fail(sec, "socket", "must be an absolute path")
    d = DaemonSection()
    return DaemonSection(
        socket=socket_path,
        forward=r.choice(sec, daemon, "forward", FORWARD_MODES, d.forward),
        connect_timeout=r.number(sec, daemon, "connect_timeout", d.connect_timeout, lo=0.01, hi=30),
        reply_timeout=r.number(sec, daemon, "reply_timeout", d.reply_timeout, lo=0.1, hi=120),
        socket_group=r.string(sec, daemon, "socket_group"),
        allowed_users=r.strings(sec, daemon, "allowed_users")
        if "allowed_users" in daemon
        else d.allowed_users,
        workers=int(r.number(sec, daemon, "workers", d.workers, lo=0, hi=256)),
        queue=int(r.number(sec, daemon, "queue", d.queue, lo=0, hi=100000)),
        peer_connections=int(r.number(sec, daemon, "peer_connections", d.peer_connections, lo=1, hi=100000)),
        idle_timeout=r.number(sec, daemon, "idle_timeout", d.idle_timeout, lo=0.1, hi=3600),
        drain_timeout=r.number(sec, daemon, "drain_timeout", d.drain_timeout, lo=0, hi=600),
        cache=r.boolean(sec, daemon, "cache", d.cache),
        cache_size=int(r.number(sec, daemon, "cache_size", d.cache_size, lo=0, hi=10_000_000)),
        cache_max_age=r.number(sec, daemon, "cache_max_age", d.cache_max_age, lo=0, hi=7 * 86400),
        throttle=r.boolean(sec, daemon, "throttle", d.throttle),
        throttle_window=r.number(sec, daemon, "throttle_window", d.throttle_window, lo=1, hi=86400),
        throttle_ip_failures=int(
            r.number(sec, daemon, "throttle_ip_failures", d.throttle_ip_failures, lo=1, hi=10**6)
        ),
        throttle_user_failures=int(
            r.number(sec, daemon, "throttle_user_failures", d.throttle_user_failures, lo=1, hi=10**6)
        ),
        throttle_ipv6_prefix=int(
            r.number(sec, daemon, "throttle_ipv6_prefix", d.throttle_ipv6_prefix, lo=32, hi=128)
        ),
        throttle_exempt_networks=_networks(r, sec, daemon, "throttle_exempt_networks"),
    )


def _postfix(r: _Reader, table: dict[str, Any]) -> PostfixSection:
    sec, d = "postfix", PostfixSection()
    r.only_keys(sec, table, ("socket", "socket_group", "allowed_users"))
    socket_path = r.string(sec, table, "socket")
    if socket_path and not socket_path.startswith("/"):
        raise r.fail(sec, "socket", "must be an absolute path")
    return PostfixSection(
        socket=socket_path,
        socket_group=r.string(sec, table, "socket_group", d.socket_group),
        allowed_users=r.strings(sec, table, "allowed_users") if "allowed_users" in table else d.allowed_users,
    )


# --- Nextcloud's config.php -------------------------------------------------------


class NextcloudPhp(NamedTuple):
    """Nextcloud's config.php, parsed as data (ncauth.phpconfig): every key as
    Nextcloud's getter reads it, and the raw values for the rules that need them."""

    settings: phpconfig.NextcloudSettings
    data: dict[Any, Any]


def read_config_php(path: str) -> NextcloudPhp:
    """Nextcloud's config.php merged with the ``*.config.php`` files beside it, as
    Nextcloud reads them, parsed and never executed (the folder is the web server's)."""
    from ncauth import phpconfig

    try:
        data = phpconfig.read_nextcloud_config(path).data
        return NextcloudPhp(phpconfig.nextcloud_settings(data), data)
    except ConfigError as exc:
        raise ConfigError(f"[nextcloud] config_php = {path!r}: {exc}") from None


def _postgresql_scheme() -> str:
    """psycopg (3) where SQLAlchemy has a dialect for it (2.0: Debian 13, pip), psycopg2 on
    SQLAlchemy 1.4 (Debian 12), which has none; read from the metadata, not by importing it."""
    from importlib import metadata

    try:
        major = metadata.version("SQLAlchemy").split(".", 1)[0]
    except metadata.PackageNotFoundError:
        major = "2"
    return "postgresql+psycopg2" if major == "1" else "postgresql+psycopg"


def database_url_from_php(php: phpconfig.NextcloudSettings, source: str) -> str:
    """Turn config.php's db* keys into an SQLAlchemy URL (password percent-encoded), the
    way Nextcloud's ConnectionFactory::createConnectionParams connects."""
    if php.dbtype == "sqlite3":
        if php.datadirectory is None:
            raise ConfigError(
                f"[nextcloud] config_php: {source}: dbtype sqlite3 but no datadirectory: "
                "set [nextcloud] database_url"
            )
        return f"sqlite:///{os.path.join(php.datadirectory, php.dbname + '.db')}"
    if php.dbtype not in ("mysql", "pgsql"):
        raise ConfigError(
            f"[nextcloud] config_php: {source}: dbtype {php.dbtype!r} is not supported "
            "(mysql, pgsql, sqlite3)"
        )
    from urllib.parse import quote  # here: it imports ipaddress, which checkpassword rarely needs

    user = quote(php.dbuser, safe="")
    password = quote(php.dbpassword, safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host, port, socket_path = php.db_host or "localhost", php.db_port, php.db_socket
    query = ""
    if php.dbtype == "mysql":
        scheme = "mysql+pymysql"
        if socket_path:
            query = "?unix_socket=" + quote(socket_path, safe="/")
        elif host == "localhost" and not port:
            # libmysqlclient (and so PHP's mysqli/PDO) treat "localhost" as the default socket.
            query = "?unix_socket=/run/mysqld/mysqld.sock"
    else:
        scheme = _postgresql_scheme()
        if host.startswith("/"):
            socket_path, host = host, ""
        if socket_path:
            query = "?host=" + quote(
                socket_path if not socket_path.endswith(".s.PGSQL.5432") else os.path.dirname(socket_path),
                safe="/",
            )
            host = ""
        elif ":" in host:
            host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return f"{scheme}://{auth}{netloc}/{quote(php.dbname, safe='')}{query}"
