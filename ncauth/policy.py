"""From a mail login to a verdict: which Nextcloud user, may they log in, as whom.

This is the one code path behind ``ncauth verify``, checkpassword and the daemon.
Rules (docs/decisions.md, "What ncauth decides, and why"): the login maps to ``uid_lower`` by ``[accounts] match``; users of
other domains are unknown; disabled users are refused; an app password is accepted
for its owner while valid; a user with a second factor must use an app password
unless the client comes from a trusted network; and every path that ends without a
real password check spends the same argon2 work, so timing does not tell whether a
user exists.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from ncauth import hashes, names
from ncauth.cache import VerifiedCache
from ncauth.config import QUOTA_PLACEHOLDER, Config
from ncauth.errors import TemporaryFailure
from ncauth.outcome import Outcome
from ncauth.queries import Reader, TokenRow, UserRow

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ncauth.records import NamedTuple  # typing's, without its start-up cost

if TYPE_CHECKING:
    import ipaddress

#: Nextcloud refuses shorter strings as app passwords before any lookup.
MIN_TOKEN_LENGTH = 22
#: Token types that can log in: 0 temporary (session), 1 permanent (app password).
LOGIN_TOKEN_TYPES = (0, 1)

Trace = Callable[[str, str], None]


# The records below are NamedTuples, not dataclasses: checkpassword imports this module
# for one decision, and ``dataclasses`` (with ``inspect``) would cost it milliseconds.


class Verdict(NamedTuple):
    outcome: Outcome
    reason: str
    user: str = ""  # canonical name for Dovecot
    uid: str = ""  # Nextcloud uid
    fields: Mapping[str, str] = MappingProxyType({})  # userdb fields, unprefixed
    method: str = ""  # "password" | "app-password" | "lookup"
    disabled: bool = False  # lookups: the user exists but is disabled

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


class Login(NamedTuple):
    """A login name split the way the account rules need it: exactly one ``@``, a
    served, well-formed domain (see ``ncauth.names``)."""

    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


class Work(NamedTuple):
    """The real hash check a refusal already paid for: when it started (None: none ran,
    e.g. a cached match), and whether it alone costs what a decoy does."""

    since: float | None = None
    covers: bool = False


class Account(NamedTuple):
    """A Nextcloud user row and the mailbox name (canonical user) it owns."""

    row: UserRow
    name: str  # local@domain, exactly one '@'
    local: str
    domain: str


_NO_EMAIL_OWNER = "no user has this e-mail address"


def _no_trace(step: str, detail: str) -> None:
    pass


def parse_login(login: str, config: Config) -> Login | str:
    """Split and check *login*; a string return is the reason it is unknown.

    Dovecot splits at the first ``@`` and ncauth must agree with it, so a login with
    more than one ``@`` is nobody's; the domain follows ``names.is_domain`` (the rule
    config loading uses for ``[accounts] domains``) and must be served."""
    acc = config.accounts
    if not login:
        return "empty login"
    problem = names.path_problem(login)
    if problem:
        return f"login {problem}"
    lowered = login.lower()
    if lowered.count("@") > 1:
        return "login contains more than one '@'"
    local, at, domain = lowered.partition("@")
    if not at:
        if not acc.default_domain:
            return "login has no domain and accounts.default_domain is not set"
        domain = acc.default_domain
    problem = names.local_part_problem(local)
    if problem:
        return f"local part {problem}"
    if not names.is_domain(domain):
        return f"{domain!r} is not a domain name" if domain else "empty domain"
    if not acc.serves(domain):
        return f"domain {domain!r} is not served (accounts.domains)"
    return Login(local, domain)


class Authenticator:
    """Decides logins for one configuration; safe to share between threads."""

    def __init__(
        self,
        config: Config,
        store: Reader | None = None,
        *,
        cache: VerifiedCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        if store is None:
            from ncauth.store import Store

            store = Store(config.nextcloud)
        self.store = store
        self.cache = cache
        self.clock = clock
        secret = config.nextcloud.secret.encode()
        self._token_suffixes = (secret, b"") if secret else (b"",)
        #: does ``[userdb]`` use ``{quota_bytes}`` (a query per answer)? Decided once.
        self._wants_quota = config.uses_placeholder(QUOTA_PLACEHOLDER)
        #: seconds of recent decoy runs: what a cheaper check's refusal waits up to
        self._decoy_times: deque[float] = deque(maxlen=16)

    # -- public ----------------------------------------------------------------------

    def authenticate(
        self, login: str, password: bytes, *, remote_ip: str = "", trace: Trace | None = None
    ) -> Verdict:
        """Check *password* for *login*. Database problems become a TEMPFAIL verdict."""
        t = trace or _no_trace
        try:
            return self._authenticate(login, password, remote_ip, t)
        except TemporaryFailure as exc:  # the caller reports the verdict, once
            return Verdict(Outcome.TEMPFAIL, str(exc))

    def lookup(
        self, login: str, *, trace: Trace | None = None, by_name: bool = True, userdb: bool = True
    ) -> Verdict:
        """Does *login* name a Nextcloud user? No password is involved. *by_name*: with
        match = "email", also by an account's canonical name (Dovecot's lookups after
        iterating users); Postfix's maps pass False, since with trust_user_emails a user
        could claim that name as her address and take its mail. *userdb*: False leaves
        the ``[userdb]`` fields (and the queries they cost) out."""
        t = trace or _no_trace
        try:
            parsed = parse_login(login, self.config)
            if isinstance(parsed, str):
                t("login", f"unknown: {parsed}")
                return Verdict(Outcome.UNKNOWN, parsed)
            found = self._find(parsed, t, by_name=by_name)
            if isinstance(found, str):
                return Verdict(Outcome.UNKNOWN, found)
            enabled = found.row.enabled
            t("enabled", "yes" if enabled else "NO (disabled in Nextcloud)")
            return self._ok(found, "lookup", "user exists", t, disabled=not enabled, userdb=userdb)
        except TemporaryFailure as exc:  # the caller reports the verdict, once
            return Verdict(Outcome.TEMPFAIL, str(exc))

    def mailbox_owner(self, address: str) -> Verdict:
        """Postfix's question about *address*: the enabled account it is a mailbox of (OK,
        with the canonical name), or UNKNOWN (no such account, disabled, not a member of
        ``[accounts] groups``), or TEMPFAIL. A lookup: no password, no decoy, and no
        decision line (Postfix asks for every recipient; the answer is its to log)."""
        if address.count("@") != 1:  # Postfix asks a bare local part only for its own local
            return Verdict(Outcome.UNKNOWN, "not an address with exactly one '@'")  # domains
        verdict = self.lookup(address, by_name=False, userdb=False)
        if verdict.ok and verdict.disabled:
            return Verdict(Outcome.UNKNOWN, "disabled in Nextcloud", uid=verdict.uid)
        return verdict

    def login_names(self, verdict: Verdict) -> list[str]:
        """The SASL login names (Dovecot's canonical ``user=``) that own the mailbox of an
        OK *verdict*: with match = "local-part" the account's name in every served domain
        (one Nextcloud password logs in to each), else its one canonical name."""
        if self.config.accounts.match != "local-part":
            return [verdict.user]
        local = verdict.user.rpartition("@")[0]
        return [f"{local}@{domain}" for domain in self.config.accounts.domains]

    def accounts(self) -> list[str]:
        """The canonical names of every enabled account this configuration serves, sorted:
        each name a login or a lookup of it would hand Dovecot (with match = "local-part",
        one per served domain). For ``doveadm -A``, ``ncauth users`` and Postfix's list of
        recipients; raises TemporaryFailure when the database does not answer."""
        acc = self.config.accounts
        rows = self.store.all_users()
        by_lower: dict[str, list[UserRow]] = {}
        for row in rows:
            by_lower.setdefault(row.uid_lower, []).append(row)
        members = self.store.members(acc.groups) if acc.groups else None
        # rows that alone own their uid_lower, in lower case (as _own_uid_lower demands of
        # one row): a login is lower-cased before it is compared, so no login reaches others
        own = {
            row.uid: row
            for row in rows
            if len(by_lower[row.uid_lower]) == 1 and row.uid_lower == row.uid_lower.lower()
        }
        owners: dict[str, set[str]] = {}
        if acc.match == "email":
            for uid, address in self.store.emails():
                owners.setdefault(address.lower(), set()).add(uid)
            candidates = [
                (address, own.get(next(iter(uids)))) for address, uids in owners.items() if len(uids) == 1
            ]
            pairs = [(address, row) for address, row in candidates if row is not None]
        else:
            pairs = [(row.uid_lower, row) for row in own.values()]
        taken = set(owners)  # with match = "email": every address somebody has
        names_out: set[str] = set()
        for key, row in pairs:
            if not row.enabled or (members is not None and row.uid not in members):
                continue
            if acc.match == "local-part":
                logins = [Login(key, d) for d in acc.domains]
            else:
                parsed = parse_login(key, self.config)
                logins = [] if isinstance(parsed, str) else [parsed]
            for login in logins:
                account = self._account(login, row)
                # with match = "email", a name that is an e-mail address finds its owner
                # first: list it only when that owner is this very account
                if not isinstance(account, str) and (account.name not in taken or account.name == key):
                    names_out.add(account.name)
        return sorted(names_out)

    # -- the decision ----------------------------------------------------------------

    def _authenticate(self, login: str, password: bytes, remote_ip: str, t: Trace) -> Verdict:
        if not password:
            t("password", "empty: refused before any lookup")
            return Verdict(Outcome.REFUSED, "empty password")
        parsed = parse_login(login, self.config)
        if isinstance(parsed, str):
            t("login", f"unknown: {parsed}")
            return self._refuse(Verdict(Outcome.UNKNOWN, parsed), password, t)
        found = self._find(parsed, t)
        if isinstance(found, str):
            return self._refuse(Verdict(Outcome.UNKNOWN, found), password, t)
        account, user = found, found.row
        t("enabled", "yes" if user.enabled else "NO (disabled in Nextcloud)")

        token_problem = ""
        if self.config.accounts.app_passwords and len(password) >= MIN_TOKEN_LENGTH:
            token, token_problem = self._app_password(login, parsed, user, password, t)
            if token is not None:
                if not user.enabled:
                    return self._refuse(
                        Verdict(Outcome.REFUSED, "user is disabled in Nextcloud", uid=user.uid), password, t
                    )
                return self._ok(account, "app-password", f"app password (token id {token.id})", t)

        scheme = hashes.identify(user.password, self.config.nextcloud.limits)
        t("hash", scheme.describe())
        good, work = self._check_password(user, password, scheme, t)
        if not good:
            reason = token_problem or (
                "wrong password" if not scheme.problem else f"cannot verify: {scheme.problem}"
            )
            verdict = Verdict(Outcome.REFUSED, reason, uid=user.uid)
        elif not user.enabled:
            verdict = Verdict(Outcome.REFUSED, "user is disabled in Nextcloud", uid=user.uid)
        elif refusal := self._login_password_refusal(user, remote_ip, t):
            verdict = Verdict(Outcome.REFUSED, refusal, uid=user.uid)
        else:
            return self._ok(account, "password", f"password ({scheme.name})", t)
        return self._refuse(verdict, password, t, work)

    def _check_password(
        self, user: UserRow, password: bytes, scheme: hashes.Scheme, t: Trace
    ) -> tuple[bool, Work]:
        """(matches, the work it took, for a refusal's cost) for a login password against
        *user*'s hash, answered from the verified-credentials cache when it holds this
        very match."""
        parts = (b"verify", user.password.encode(), password)
        if self.cache is not None and self.cache.verified(*parts):
            t("verify", "match (cached: same stored hash, same password)")
            return True, Work()
        nc = self.config.nextcloud
        since = time.perf_counter()
        work = Work(since=since, covers=scheme.covers(nc.hashing))
        good = any(
            hashes.verify(form, user.password, nc.password_salt, nc.limits)
            for form in hashes.login_password_forms(password)
        )
        if good and self.cache is not None:
            self.cache.add(*parts)
        t(
            "verify",
            f"{'match' if good else 'no match'} in {(time.perf_counter() - since) * 1000:.0f} ms",
        )
        return good, work

    def _find(self, login: Login, t: Trace, *, by_name: bool = False) -> Account | str:
        """The one Nextcloud account *login* names, with the mailbox name it owns, or
        the reason there is none. With match = "email" a lookup (*by_name*) also finds an
        account by its canonical name, which Dovecot hands back when it iterates users
        (``doveadm -A``), but only when no user has that string as an e-mail address."""
        mode = self.config.accounts.match
        if mode == "email":
            found = self._email_owner(login, t)
            if found == _NO_EMAIL_OWNER and by_name:
                named = self._by_canonical_name(login, t)
                return named if isinstance(named, str) else self._member(named, t)
            if isinstance(found, str):
                return found
            rows = [found]
        else:
            uid_lower = login.local if mode == "local-part" else login.address
            t("uid", f"match {mode}: uid_lower {uid_lower!r}")
            rows = self.store.users(uid_lower)
            if len(rows) > 1:
                t("row", f"{len(rows)} rows share uid_lower {uid_lower!r}: refusing to guess")
                return f"{len(rows)} Nextcloud users share uid_lower {uid_lower!r}"
            if not rows:
                if trace_wanted(t) and self.store.known_elsewhere(uid_lower):
                    t(
                        "row",
                        f"none in {self.store.users_table}, but Nextcloud has preferences for {uid_lower!r}: "
                        "a user of another backend (LDAP, SAML…), which ncauth cannot check",
                    )
                    return "not a database user (LDAP/SAML?)"
                t("row", f"none: no Nextcloud user {uid_lower!r}")
                return "no such Nextcloud user"
        row = rows[0]
        t("row", f"found uid {row.uid!r}")
        account = self._account(login, row)
        if isinstance(account, str):
            t("mailbox", f"refused: {account}")
            return account
        return self._member(account, t)

    def _member(self, account: Account, t: Trace) -> Account | str:
        """*account* when ``[accounts] groups`` admits it (a member of one of them, or no
        groups set), else why not: a non-member has no mailbox, for every front end."""
        wanted = self.config.accounts.groups
        if not wanted:
            return account
        member = sorted(self.store.groups_of(account.row.uid).intersection(wanted))
        t("groups", f"member of {', '.join(member)}" if member else f"NOT a member of {', '.join(wanted)}")
        return account if member else "not a member of [accounts] groups"

    def _email_owner(self, login: Login, t: Trace) -> UserRow | str:
        """The one user whose Nextcloud e-mail address is the login. Config loading made
        sure these addresses are admin-controlled (or the admin chose to trust them);
        the row is then read by its exact uid, and its own ``uid_lower`` names the mailbox."""
        uids = self.store.uids_by_email(login.address)
        t(
            "email",
            f"{login.address!r} is the e-mail of {len(uids)} user(s)"
            + (f": {uids[0]!r}" if len(uids) == 1 else ""),
        )
        if len(uids) != 1:
            # Nextcloud's Session::logClientIn also logs in by e-mail only when it is unique
            return _NO_EMAIL_OWNER if not uids else "several users share this e-mail address"
        row = self.store.user_by_uid(uids[0])
        if row is None:
            t("row", f"none: {uids[0]!r} is not a user of {self.store.users_table}")
            return "no such Nextcloud user"
        return self._own_uid_lower(row, t)

    def _own_uid_lower(self, row: UserRow, t: Trace) -> UserRow | str:
        """*row* when its ``uid_lower`` names it alone: lower-case, and no other row
        carries it (the mailbox is named by it, so a row holding another's uid_lower
        would get that person's mailbox), as match = "local-part" requires too."""
        if row.uid_lower != row.uid_lower.lower():
            return f"uid_lower {row.uid_lower!r} of {row.uid!r} is not lower-case"
        rows = self.store.users(row.uid_lower)
        if [r.uid for r in rows] != [row.uid]:
            t("row", f"{len(rows)} rows share uid_lower {row.uid_lower!r}: refusing to guess")
            return f"{len(rows)} Nextcloud users share uid_lower {row.uid_lower!r}"
        return row

    def _by_canonical_name(self, login: Login, t: Trace) -> Account | str:
        """match = "email": the account whose canonical name *login* is (its uid_lower at
        the domain of its own, unique e-mail address), for lookups only."""
        rows = self.store.users(login.local)
        if len(rows) != 1:
            return _NO_EMAIL_OWNER
        address = self.store.email_of(rows[0].uid).lower()
        parts = names.split_address(address)
        if parts is None or parts[1] != login.domain or self.store.uids_by_email(address) != [rows[0].uid]:
            return _NO_EMAIL_OWNER
        t("row", f"{login.address!r} is the canonical name of uid {rows[0].uid!r} (e-mail {address!r})")
        return self._account(login, rows[0])

    def _account(self, login: Login, row: UserRow) -> Account | str:
        """*row* with the one mailbox name it owns: its stored ``uid_lower`` as the local
        part (with match = "address", the whole name), never anything the login or the
        user's profile supplied, and only when that name splits back into exactly its
        parts (``ncauth.names``). Any other row is nobody's mailbox."""
        if self.config.accounts.match == "address":
            parts = names.split_address(row.uid_lower)
            if parts is None:
                return f"uid {row.uid!r} is not an address with exactly one '@'"
            local, domain = parts
        else:
            local, domain = row.uid_lower, login.domain
        name = names.mailbox_name(local, domain)
        if name is None:
            why = names.local_part_problem(local) or f"domain {domain!r} is not a domain name"
            return f"uid {row.uid!r} cannot name a mailbox: {why}" + (
                " (use match = \"address\" for uids that are addresses)" if "@" in local else ""
            )
        problem = names.path_problem(row.uid)
        if problem:
            return f"uid {row.uid!r} cannot be used in mail paths: {problem}"
        return Account(row, name, local, domain)

    def _app_password(
        self, login: str, parsed: Login, user: UserRow, password: bytes, t: Trace
    ) -> tuple[TokenRow | None, str]:
        """The valid app-password token of *user* that *password* is, if any, else the
        reason the matching token (if there was one) may not be used."""
        candidates = [hashlib.sha512(password + suffix).hexdigest() for suffix in self._token_suffixes]
        rows = [r for r in self.store.tokens(candidates) if r.uid == user.uid]
        if not rows:
            t("app password", "not an app password of this user")
            return None, ""
        problem = ""
        for row in rows:
            problem = self._token_problem(row, login, parsed, user) or self._stale_token(
                row, user, password, t
            )
            t("app password", f"token id {row.id} (type {row.type}): {problem or 'valid'}")
            if not problem:
                return row, ""
        return None, problem

    def _token_problem(self, row: TokenRow, login: str, parsed: Login, user: UserRow) -> str:
        if row.type not in LOGIN_TOKEN_TYPES:
            return (
                "app password is a remote-wipe token"
                if row.type == 2
                else f"app password of type {row.type} cannot log in"
            )
        if row.expires and row.expires < self.clock():
            return "app password expired"
        if row.password_invalid:
            return "app password invalidated (password changed in Nextcloud)"
        allowed = {login.lower(), parsed.local, parsed.address, user.uid.lower(), user.uid_lower}
        name = row.login_name.lower()
        if name not in allowed and name != self.store.email_of(user.uid).lower():
            return f"app password was made for login name {row.login_name!r}"
        return ""

    def _stale_token(self, row: TokenRow, user: UserRow, app_password: bytes, t: Trace) -> str:
        """Why the login password stored with the token no longer verifies, or "".

        Nextcloud's ``Session::checkTokenCredentials`` decrypts the password stored with
        the token (``PublicKeyTokenProvider::getPassword``) and refuses the token when it
        no longer logs the user in, as after an admin's ``occ user:resetpassword``,
        which leaves tokens alone. Nextcloud skips this for 5 minutes after a check
        (``last_check``); ncauth never writes ``last_check``, so it checks every time.
        A token that stores no password has nothing to re-check, as in Nextcloud."""
        from ncauth import tokencrypt

        try:
            stored = tokencrypt.stored_login_password(
                row.private_key, row.stored_password, app_password, self.config.nextcloud.secret
            )
        except tokencrypt.TokenDecryptError as exc:
            return f"app password refused: {exc} (Nextcloud refuses it too)"
        if stored is None:
            t("app password", f"token id {row.id} stores no login password: nothing to re-check")
            return ""
        scheme = hashes.identify(user.password, self.config.nextcloud.limits)
        good, _ = self._check_password(user, stored, scheme, t)
        return "" if good else "app password invalidated: the login password it was made with has changed"

    def _login_password_refusal(self, user: UserRow, remote_ip: str, t: Trace) -> str:
        """Why *user* may not log in with the login password (two-factor or Nextcloud's
        token_auth_enforced), or "" when it may. Trusted networks (webmail inside
        Nextcloud sends the login password) are exempt from these rules only."""
        acc = self.config.accounts
        if acc.app_password_required:
            why = "app passwords required (token_auth_enforced)"
        elif acc.two_factor == "app-password-only" and (
            user.second_factors or self._two_factor_enforced(user)
        ):
            why = (
                f"{user.second_factors} second factor(s) enabled"
                if user.second_factors
                else "two-factor authentication enforced by the admin"
            )
        else:
            t(
                "two-factor",
                "none" if acc.two_factor == "app-password-only" else "not checked (allow-login-password)",
            )
            return ""
        if remote_ip and self.trusted(remote_ip):
            t("two-factor", f"{why}; {remote_ip} is in accounts.trusted_networks: login password allowed")
            return ""
        t(
            "two-factor",
            f"{why}: only app passwords may log in" + (f" ({remote_ip} is not trusted)" if remote_ip else ""),
        )
        return (
            "app password required" if acc.app_password_required else "two-factor user: use an app password"
        )

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
        return in_networks(remote_ip, self.config.accounts.trusted_networks)

    def account_key(self, login: str) -> str:
        """What the per-account throttle counts *login* under: the Nextcloud account it
        names (its uid_lower, or the e-mail address that alone finds it), so that case,
        domain and default-domain spellings share one budget; the lower-cased login
        when it names nobody. No database work: it runs before admission."""
        parsed = parse_login(login, self.config)
        if isinstance(parsed, str):
            return "?" + login.lower()
        match = self.config.accounts.match
        if match == "local-part":
            return "uid:" + parsed.local
        return ("uid:" if match == "address" else "email:") + parsed.address

    def _refuse(self, verdict: Verdict, password: bytes, t: Trace, work: Work | None = None) -> Verdict:
        """*verdict*, once it has cost what a check with Nextcloud's current parameters
        costs: every refusal costs the same, whether the account exists, is disabled, has
        a second factor, an older or cheaper hash, or has been tried before, so neither
        timing nor repetition tells them apart.

        *work* is the real check that ran: one at Nextcloud's cost is enough on its own; a
        cheaper one (bcrypt, older argon2 parameters) is topped up by waiting until the
        decoy's measured time has passed; with no real check, or no decoy measured yet in
        this process, the decoy runs (argon2id with Nextcloud's parameters, one run per
        password form). Only ever after a refusal: a correct password never waits, and
        no two hashes ever run at once (checkpassword lives in Dovecot's vsz_limit)."""
        if work is not None and work.covers:
            return verdict
        forms = len(hashes.login_password_forms(password))
        decoy = self._decoy_seconds()
        if work is not None and work.since is not None and decoy is not None:
            wait = decoy * forms - (time.perf_counter() - work.since)
            if wait > 0:
                time.sleep(wait)
            t("decoy", f"waited {max(wait, 0) * 1000:.0f} ms, so that this refusal costs what any other does")
            return verdict
        h = self.config.nextcloud.hashing
        spent = 0.0
        for form in hashes.login_password_forms(password):
            started = time.perf_counter()
            hashes.decoy(form, h)
            spent += (one := time.perf_counter() - started)
            self._decoy_times.append(one)
        t(
            "decoy",
            f"argon2id m={h.memory_cost},t={h.time_cost},p={h.threads} spent "
            f"{spent * 1000:.0f} ms, so that this refusal costs what any other does",
        )
        return verdict

    def _decoy_seconds(self) -> float | None:
        """The median time of this process's recent decoy runs, if it made any."""
        times = sorted(self._decoy_times)
        return times[len(times) // 2] if times else None

    def _quota_bytes(self, uid: str, t: Trace) -> str:
        """``{quota_bytes}``: the limit Nextcloud enforces for *uid* (``ncauth.quota``), as
        Dovecot reads a byte count. A database error is a TemporaryFailure, as for any read."""
        from ncauth.quota import dovecot_bytes, effective_quota, quota_bytes

        settings = self.store.quota_settings(uid)
        limit = quota_bytes(settings)
        value = dovecot_bytes(limit)
        t(
            "quota",
            f"Nextcloud quota {effective_quota(settings)!r}: "
            + ("no limit" if limit is None else f"{limit} bytes")
            + f" -> {{quota_bytes}} = {value}",
        )
        return value

    def _ok(
        self,
        account: Account,
        method: str,
        reason: str,
        t: Trace,
        *,
        disabled: bool = False,
        userdb: bool = True,
    ) -> Verdict:
        """An OK verdict for *account*, with its ``[userdb]`` fields unless *userdb* is
        False (Postfix's maps ask only whether the mailbox exists: no quota query)."""
        values = {
            "user": account.name,
            "local": account.local,
            "domain": account.domain,
            "uid": account.row.uid,
        }
        fields: dict[str, str] = {}
        if userdb:
            if self._wants_quota:
                values[QUOTA_PLACEHOLDER] = self._quota_bytes(account.row.uid, t)
            fields = {key: template.format_map(values) for key, template in self.config.userdb.items()}
        t("user", account.name)
        if fields:
            t("userdb", " ".join(f"{k}={v}" for k, v in fields.items()))
        return Verdict(
            Outcome.OK,
            reason,
            user=account.name,
            uid=account.row.uid,
            fields=fields,
            method=method,
            disabled=disabled,
        )


def in_networks(remote_ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Is *remote_ip* in one of *networks*? (IPv4-mapped IPv6 counts as IPv4.)"""
    import ipaddress

    try:
        ip = ipaddress.ip_address(remote_ip)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def trace_wanted(t: Trace) -> bool:
    """Diagnostic-only queries run only when somebody reads the trace."""
    return t is not _no_trace
