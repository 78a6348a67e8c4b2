"""From a mail login to a verdict: which Nextcloud user, may they log in, as whom.

This is the one code path behind ``ncauth verify``, checkpassword and the daemon.
Rules (DESIGN §2): the login maps to ``uid_lower`` by ``[accounts] match``; users of
other domains are unknown; disabled users are refused; an app password is accepted
for its owner while valid; a user with a second factor must use an app password
unless the client comes from a trusted network; and every path that ends without a
real password check spends the same argon2 work, so timing does not tell whether a
user exists.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ncauth import hashes
from ncauth.cache import VerifiedCache
from ncauth.config import Config
from ncauth.errors import TemporaryFailure
from ncauth.store import Store, TokenRow, UserRow

#: Nextcloud refuses shorter strings as app passwords before any lookup.
MIN_TOKEN_LENGTH = 22
#: Token types that can log in: 0 temporary (session), 1 permanent (app password).
LOGIN_TOKEN_TYPES = (0, 1)

Trace = Callable[[str, str], None]


class Outcome(enum.Enum):
    OK = "ok"
    REFUSED = "refused"      # known user, wrong password or not allowed
    UNKNOWN = "unknown"      # no such user (or not ours to answer for)
    TEMPFAIL = "tempfail"    # no verdict possible now


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    user: str = ""                     # canonical name for Dovecot
    uid: str = ""                      # Nextcloud uid
    fields: dict[str, str] = field(default_factory=dict)  # userdb fields, unprefixed
    method: str = ""                   # "password" | "app-password" | "lookup"
    disabled: bool = False             # lookups: the user exists but is disabled

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True)
class Login:
    """A login name split the way the account rules need it."""

    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local


def _no_trace(step: str, detail: str) -> None:
    pass


def parse_login(login: str, config: Config) -> Login | str:
    """Split and check *login*; a string return is the reason it is unknown."""
    acc = config.accounts
    if not login:
        return "empty login"
    if any(ord(c) < 32 or c in "/\\\x7f" for c in login):
        return "login contains '/', '\\' or control characters"
    if any("\udc80" <= c <= "\udcff" for c in login):
        return "login is not valid UTF-8"
    lowered = login.lower()
    local, at, domain = lowered.rpartition("@")
    if not at:
        local, domain = lowered, acc.default_domain
    if not local or local in (".", ".."):
        return "empty local part"
    if domain and not _domain_ok(domain):
        return f"{domain!r} is not a domain name"
    if acc.domains and domain not in acc.domains:
        return f"domain {domain or '(none)'!r} is not served (accounts.domains)" if domain else \
            "login has no domain and accounts.default_domain is not set"
    return Login(local, domain)


def _domain_ok(domain: str) -> bool:
    labels = domain.split(".")
    return all(lab and not lab.startswith("-") and not lab.endswith("-") and
               all(c.isalnum() or c == "-" for c in lab) for lab in labels)


class Authenticator:
    """Decides logins for one configuration; safe to share between threads."""

    def __init__(self, config: Config, store: Store | None = None, *, cache: VerifiedCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store if store is not None else Store(config.nextcloud)
        self.cache = cache
        self.clock = clock
        secret = config.nextcloud.secret.encode()
        self._token_suffixes = (secret, b"") if secret else (b"",)

    # -- public ----------------------------------------------------------------------

    def authenticate(self, login: str, password: bytes, *, remote_ip: str = "", trace: Trace | None = None) -> Verdict:
        """Check *password* for *login*. Database problems become a TEMPFAIL verdict."""
        t = trace or _no_trace
        try:
            return self._authenticate(login, password, remote_ip, t)
        except TemporaryFailure as exc:
            t("verdict", f"TEMPFAIL: {exc}")
            return Verdict(Outcome.TEMPFAIL, str(exc))

    def lookup(self, login: str, *, trace: Trace | None = None) -> Verdict:
        """Does *login* name a Nextcloud user? No password is involved."""
        t = trace or _no_trace
        try:
            parsed = parse_login(login, self.config)
            if isinstance(parsed, str):
                t("login", f"unknown: {parsed}")
                return Verdict(Outcome.UNKNOWN, parsed)
            found = self._find(parsed, t)
            if isinstance(found, str):
                return Verdict(Outcome.UNKNOWN, found)
            t("enabled", "yes" if found.enabled else "NO (disabled in Nextcloud)")
            return self._ok(parsed, found, "lookup", "user exists", t, disabled=not found.enabled)
        except TemporaryFailure as exc:
            t("verdict", f"TEMPFAIL: {exc}")
            return Verdict(Outcome.TEMPFAIL, str(exc))

    # -- the decision ----------------------------------------------------------------

    def _authenticate(self, login: str, password: bytes, remote_ip: str, t: Trace) -> Verdict:
        if not password:
            t("password", "empty: refused before any lookup")
            return Verdict(Outcome.REFUSED, "empty password")
        parsed = parse_login(login, self.config)
        if isinstance(parsed, str):
            t("login", f"unknown: {parsed}")
            return self._decoy(login, password, Verdict(Outcome.UNKNOWN, parsed), t)
        found = self._find(parsed, t)
        if isinstance(found, str):
            return self._decoy(login, password, Verdict(Outcome.UNKNOWN, found), t)
        user = found
        t("enabled", "yes" if user.enabled else "NO (disabled in Nextcloud)")

        token_problem = ""
        if self.config.accounts.app_passwords and len(password) >= MIN_TOKEN_LENGTH:
            token, token_problem = self._app_password(login, parsed, user, password, t)
            if token is not None:
                if not user.enabled:
                    return Verdict(Outcome.REFUSED, "user is disabled in Nextcloud", uid=user.uid)
                return self._ok(parsed, user, "app-password", f"app password (token id {token.id})", t)

        scheme = hashes.identify(user.password)
        t("hash", scheme.describe())
        started = time.perf_counter()
        salt = self.config.nextcloud.password_salt
        good, cached = self._cached((b"verify", user.password.encode(), password), lambda: any(
            hashes.verify(form, user.password, salt) for form in hashes.login_password_forms(password)))
        t("verify", f"{'match' if good else 'no match'}" + (" (cached: same stored hash, same password)" if cached
                                                           else f" in {(time.perf_counter() - started) * 1000:.0f} ms"))
        if not good:
            reason = token_problem or ("wrong password" if not scheme.problem else f"cannot verify: {scheme.problem}")
            return Verdict(Outcome.REFUSED, reason, uid=user.uid)
        if not user.enabled:
            return Verdict(Outcome.REFUSED, "user is disabled in Nextcloud", uid=user.uid)
        refusal = self._login_password_refusal(user, remote_ip, t)
        if refusal:
            return Verdict(Outcome.REFUSED, refusal, uid=user.uid)
        return self._ok(parsed, user, "password", f"password ({scheme.name})", t)

    def _find(self, login: Login, t: Trace) -> UserRow | str:
        """The one Nextcloud user *login* names, or the reason there is none."""
        mode = self.config.accounts.match
        if mode == "email":
            uids = self.store.uids_by_email(login.address)
            t("email", f"{login.address!r} is the e-mail of {len(uids)} user(s)" + (f": {uids[0]!r}" if len(uids) == 1 else ""))
            if len(uids) != 1:
                return "no user has this e-mail address" if not uids else "several users share this e-mail address"
            uid_lower = uids[0].lower()
        else:
            uid_lower = login.local if mode == "local-part" else login.address
        t("uid", f"match {mode}: uid_lower {uid_lower!r}")
        rows = self.store.users(uid_lower)
        if len(rows) > 1:
            t("row", f"{len(rows)} rows share uid_lower {uid_lower!r}: refusing to guess")
            return f"{len(rows)} Nextcloud users share uid_lower {uid_lower!r}"
        if not rows:
            if trace_wanted(t) and self.store.known_elsewhere(uid_lower):
                t("row", f"none in {self.store.tables.users.name}, but Nextcloud has preferences for {uid_lower!r}: "
                  "a user of another backend (LDAP, SAML…), which ncauth cannot check")
                return "not a database user (LDAP/SAML?)"
            t("row", f"none: no Nextcloud user {uid_lower!r}")
            return "no such Nextcloud user"
        t("row", f"found uid {rows[0].uid!r}")
        return rows[0]

    def _app_password(self, login: str, parsed: Login, user: UserRow, password: bytes, t: Trace) -> tuple[TokenRow | None, str]:
        """The valid app-password token of *user* that *password* is, if any, else the
        reason the matching token (if there was one) may not be used."""
        candidates = [hashlib.sha512(password + suffix).hexdigest() for suffix in self._token_suffixes]
        rows = [r for r in self.store.tokens(candidates) if r.uid == user.uid]
        if not rows:
            t("app password", "not an app password of this user")
            return None, ""
        problem = ""
        for row in rows:
            problem = self._token_problem(row, login, parsed, user)
            t("app password", f"token id {row.id} (type {row.type}): {problem or 'valid'}")
            if not problem:
                return row, ""
        return None, problem

    def _token_problem(self, row: TokenRow, login: str, parsed: Login, user: UserRow) -> str:
        if row.type not in LOGIN_TOKEN_TYPES:
            return "app password is a remote-wipe token" if row.type == 2 else f"app password of type {row.type} cannot log in"
        if row.expires and row.expires < self.clock():
            return "app password expired"
        if row.password_invalid:
            return "app password invalidated (password changed in Nextcloud)"
        allowed = {login.lower(), parsed.local, parsed.address, user.uid.lower(), user.uid_lower}
        name = row.login_name.lower()
        if name not in allowed and name != self.store.email_of(user.uid).lower():
            return f"app password was made for login name {row.login_name!r}"
        return ""

    def _login_password_refusal(self, user: UserRow, remote_ip: str, t: Trace) -> str:
        """Why *user* may not log in with the login password (two-factor or Nextcloud's
        token_auth_enforced), or "" when it may. Trusted networks (webmail inside
        Nextcloud sends the login password) are exempt from these rules only."""
        acc = self.config.accounts
        if acc.app_password_required:
            why = "app passwords required (token_auth_enforced)"
        elif acc.two_factor == "app-password-only" and (user.second_factors or self._two_factor_enforced(user)):
            why = (f"{user.second_factors} second factor(s) enabled" if user.second_factors
                   else "two-factor authentication enforced by the admin")
        else:
            t("two-factor", "none" if acc.two_factor == "app-password-only" else "not checked (allow-login-password)")
            return ""
        if remote_ip and self.trusted(remote_ip):
            t("two-factor", f"{why}; {remote_ip} is in accounts.trusted_networks: login password allowed")
            return ""
        t("two-factor", f"{why}: only app passwords may log in" + (f" ({remote_ip} is not trusted)" if remote_ip else ""))
        return "app password required" if acc.app_password_required else "two-factor user: use an app password"

    def _two_factor_enforced(self, user: UserRow) -> bool:
        """Nextcloud's ``MandatoryTwoFactor::isEnforcedFor``: for everybody, for members
        of the enforced groups, or for everybody outside the excluded groups."""
        acc = self.config.accounts
        if not acc.two_factor_enforced:
            return False
        if not acc.two_factor_enforced_groups and not acc.two_factor_enforced_excluded_groups:
            return True
        groups = self.store.groups_of(user.uid)
        if acc.two_factor_enforced_groups:
            return bool(groups.intersection(acc.two_factor_enforced_groups))
        return not groups.intersection(acc.two_factor_enforced_excluded_groups)

    def trusted(self, remote_ip: str) -> bool:
        """Is *remote_ip* in ``[accounts] trusted_networks``?"""
        try:
            ip = ipaddress.ip_address(remote_ip)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.config.accounts.trusted_networks)

    def _cached(self, parts: tuple[bytes, ...], compute: Callable[[], bool]) -> tuple[bool, bool]:
        """(result, was_cached): through the verified-credentials cache when there is one."""
        if self.cache is None:
            return compute(), False
        return self.cache.remember(parts, compute)

    def _decoy(self, login: str, password: bytes, verdict: Verdict, t: Trace) -> Verdict:
        h = self.config.nextcloud.hashing
        started = time.perf_counter()

        def spend() -> bool:  # as many checks as a wrong password of this shape gets
            for form in hashes.login_password_forms(password):
                hashes.decoy(form, h)
            return False

        _, cached = self._cached((b"decoy", login.encode("utf-8", "surrogateescape"), password), spend)
        if cached:  # a repeated attempt on a known user is cached alike (negative entry)
            t("decoy", "skipped: the same attempt was answered before")
        else:
            t("decoy", f"argon2id m={h.memory_cost},t={h.time_cost},p={h.threads} spent "
              f"{(time.perf_counter() - started) * 1000:.0f} ms so that unknown users cost what real ones do")
        return verdict

    def _ok(self, login: Login, user: UserRow, method: str, reason: str, t: Trace, *, disabled: bool = False) -> Verdict:
        canonical = login.address
        values = {"user": canonical, "local": login.local, "domain": login.domain, "uid": user.uid}
        fields = {key: template.format_map(values) for key, template in self.config.userdb.items()}
        t("user", canonical)
        if fields:
            t("userdb", " ".join(f"{k}={v}" for k, v in fields.items()))
        return Verdict(Outcome.OK, reason, user=canonical, uid=user.uid, fields=fields, method=method, disabled=disabled)


def trace_wanted(t: Trace) -> bool:
    """Diagnostic-only queries run only when somebody reads the trace."""
    return t is not _no_trace
