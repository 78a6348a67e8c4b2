"""The standard Nextcloud population of the tests, and what ncauth must say to each.

Hashes are the checked-in PHP vectors (tests/vectors), stored the way Nextcloud stores
them; app tokens are stored the way PublicKeyTokenProvider stores them. CASES is the
table of logins that every front end (verify, checkpassword, Dovecot) must decide
alike; each row names the Nextcloud rule it pins.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from . import ncschema, nctokens

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "nextcloud_hashes.json").read_text())
HASH = {case["name"]: case["stored"] for case in VECTORS["cases"]}
PASSWORD_SALT = VECTORS["passwordsalt"]
SECRET = "ncauth-test-secret-6d1c0f0e2b"
DOMAIN = "example.org"
TRUSTED_NET = "192.0.2.0/24"

P = "correct horse battery staple"
UNICODE_P = "p\u00e4ssw\u00f6rd \u2713 \U0001f511"
LONG_P = "L" * 72 + "tail-that-bcrypt-ignores"
OLD_P = "the password before the admin reset it"

USERS = {
    # uid: (vector, extra)
    "Alice": "argon2id-nextcloud-default",
    "ivy": "argon2i-seed-params",
    "bob": "bcrypt-cost10",
    "sam": "legacy-sha1",
    "lee": "legacy-bcrypt-salted",
    "una": "legacy-bcrypt-unsalted",
    "uni": "argon2id-unicode",
    "dig": "digit-1-inner-argon2id",
    "long": "bcrypt-long-password",
    "four": "unknown-version-4",
    "dave": "argon2id-tuned",
    "tina": "argon2id-tuned",
    "bea": "argon2id-tuned",
    "gus": "argon2id-tuned",
    "Emma.Stone": "argon2id-tuned",
    "twin1": "argon2id-tuned",
    "twin2": "argon2id-tuned",
    "nopw": "empty-hash",
    # A uid with '@' (Nextcloud allows it): under match = "local-part" it must not be
    # reachable as "bob@evil.com@example.org", which Dovecot would split into %n = "bob".
    "bob@evil.com": "argon2id-tuned",
}

TOKENS = {
    # name: (uid, login_name, plain token, options)
    "alice-valid": ("Alice", "alice", "AliceApp-valid-000000000000000001", {}),
    "alice-expired": ("Alice", "alice", "AliceApp-expired-0000000000000002", {"expires": 1_000_000}),
    "alice-future": ("Alice", "alice", "AliceApp-future-00000000000000003", {"expires": 2_000_000_000}),
    "alice-wipe": ("Alice", "alice", "AliceApp-wipe-0000000000000000004", {"type": ncschema.TOKEN_WIPE}),
    "alice-invalid": ("Alice", "alice", "AliceApp-invalid-0000000000000005", {"password_invalid": True}),
    "alice-v1": ("Alice", "alice", "AliceApp-version1-000000000000006", {"version": 1}),
    "alice-othername": ("Alice", "someone-else", "AliceApp-othername-00000000000007", {}),
    "alice-address": ("Alice", "Alice@Example.org", "AliceApp-address-0000000000000008", {}),
    "alice-nosecret": ("Alice", "alice", "AliceApp-nosecret-000000000000009", {"secret": ""}),
    "alice-session": (
        "Alice",
        "alice",
        "AliceApp-session-0000000000000010",
        {"type": ncschema.TOKEN_TEMPORARY},
    ),
    "alice-onetime": (
        "Alice",
        "alice",
        "AliceApp-onetime-0000000000000011",
        {"type": ncschema.TOKEN_ONETIME},
    ),
    "alice-short": ("Alice", "alice", "Alice-short-21-chars!", {}),
    "bob-valid": ("bob", "bob", "BobApp-valid-000000000000000000012", {}),
    "tina-valid": ("tina", "tina", "TinaApp-valid-00000000000000000013", {}),
    "dave-valid": ("dave", "dave", "DaveApp-valid-00000000000000000014", {}),
    "emma-email": ("Emma.Stone", "emma@example.org", "EmmaApp-email-00000000000000000015", {}),
    # Session::checkTokenCredentials: the login password stored with the token must still verify
    "alice-stale": ("Alice", "alice", "AliceApp-stale-000000000000000016", {"stored": OLD_P}),
    "alice-passwordless": ("Alice", "alice", "AliceApp-nopw-0000000000000000017", {"stored": None}),
}


def php_hash(password: str) -> str:
    """A fresh ``3|`` hash of *password* as Nextcloud stores it, made by PHP's password_hash
    (cheap parameters); argon2-cffi writes the identical format where php is missing."""
    php = shutil.which("php")
    if php:
        code = 'echo "3|" . password_hash($argv[1], PASSWORD_ARGON2ID, ["memory_cost" => 8192, "time_cost" => 1, "threads" => 1]);'
        return subprocess.run(
            [php, "-r", code, "--", password], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    from argon2 import PasswordHasher

    return "3|" + PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(password)


def token(name: str) -> str:
    return TOKENS[name][2]


def populate(conn: Connection, prefix: str) -> None:
    for uid, vector in USERS.items():
        ncschema.add_user(conn, prefix, uid, HASH[vector])
    ncschema.disable_user(conn, prefix, "dave")
    ncschema.enable_user(conn, prefix, "bea")  # an explicit 'true' row
    ncschema.add_two_factor(conn, prefix, "tina", "totp")
    ncschema.add_two_factor(conn, prefix, "tina", "backup_codes")
    ncschema.add_two_factor(conn, prefix, "bea", "backup_codes")  # backup codes alone: no 2FA
    ncschema.add_two_factor(conn, prefix, "bob", "totp", enabled=False)  # disabled provider: no 2FA
    ncschema.add_group_member(conn, prefix, "admin", "gus")
    ncschema.set_email(conn, prefix, "Emma.Stone", "Emma@Example.org")
    ncschema.set_email(conn, prefix, "twin1", "twins@example.org")
    ncschema.set_email(conn, prefix, "twin2", "twins@example.org")
    # A user of another backend (LDAP): Nextcloud keeps preferences, oc_users has no row.
    ncschema.set_preference(conn, prefix, "ldapuser", "core", "lang", "de")
    for uid, login_name, plain, options in TOKENS.values():
        opts = dict(options)
        secret = opts.pop("secret", SECRET)
        # as PublicKeyTokenProvider::generateToken stores a token made at login: with the
        # login password (every user of the population has P), encrypted
        columns = nctokens.token_columns(plain, opts.pop("stored", P), secret)
        ncschema.add_app_token(conn, prefix, uid, login_name, plain, secret, **columns, **opts)


def config_text(url: str, prefix: str) -> str:
    return (
        "[nextcloud]\n"
        f"database_url = {json.dumps(url)}\n"
        f"table_prefix = {json.dumps(prefix)}\n"
        f"secret = {json.dumps(SECRET)}\n"
        f"password_salt = {json.dumps(PASSWORD_SALT)}\n"
        # decoy work for unknown users at the population's cheap cost keeps tests fast
        "hashing_memory_cost = 8192\nhashing_time_cost = 1\n"
    )


STANDARD_CONFIG = f"""
[log]
level = "debug"      # every scenario runs with debug logging: the leak check sees it all

[accounts]
domains = ["{DOMAIN}"]
trusted_networks = ["{TRUSTED_NET}"]

[userdb]
uid = "vmail"
gid = "vmail"
home = "/var/vmail/{{domain}}/{{local}}"
"""


@dataclass(frozen=True)
class Case:
    id: str
    login: str
    password: str
    outcome: str  # ok | refused | unknown
    reason: str  # a substring of the verdict's reason
    remote_ip: str = ""
    user: str = ""  # canonical user on success

    @property
    def password_bytes(self) -> bytes:
        return self.password.encode()


def _ok(id: str, login: str, password: str, reason: str, user: str, remote_ip: str = "") -> Case:
    return Case(id, login, password, "ok", reason, remote_ip, user)


A = f"alice@{DOMAIN}"
CASES = [
    _ok("argon2id", A, P, "password (argon2id)", A),
    _ok("login-case-insensitive", "ALICE@Example.ORG", P, "password (argon2id)", A),
    _ok("argon2i", f"ivy@{DOMAIN}", P, "password (argon2i)", f"ivy@{DOMAIN}"),
    _ok("bcrypt", f"bob@{DOMAIN}", P, "password (bcrypt)", f"bob@{DOMAIN}"),
    _ok("legacy-sha1", f"sam@{DOMAIN}", P, "password (legacy-sha1)", f"sam@{DOMAIN}"),
    _ok("legacy-bcrypt-salted", f"lee@{DOMAIN}", P, "password (legacy-bcrypt)", f"lee@{DOMAIN}"),
    _ok("legacy-bcrypt-unsalted", f"una@{DOMAIN}", P, "password (legacy-bcrypt)", f"una@{DOMAIN}"),
    _ok("unicode-password", f"uni@{DOMAIN}", UNICODE_P, "password (argon2id)", f"uni@{DOMAIN}"),
    _ok("digit-1-inner-argon2id", f"dig@{DOMAIN}", P, "password (argon2id)", f"dig@{DOMAIN}"),
    _ok(
        "bcrypt-72-byte-truncation",
        f"long@{DOMAIN}",
        "L" * 72 + "another tail",
        "password (bcrypt)",
        f"long@{DOMAIN}",
    ),
    _ok("dotted-uid", f"emma.stone@{DOMAIN}", P, "password (argon2id)", f"emma.stone@{DOMAIN}"),
    _ok("backup-codes-only-is-no-2fa", f"bea@{DOMAIN}", P, "password", f"bea@{DOMAIN}"),
    _ok("2fa-trusted-network", f"tina@{DOMAIN}", P, "password", f"tina@{DOMAIN}", remote_ip="192.0.2.25"),
    _ok(
        "2fa-trusted-network-v4-mapped",
        f"tina@{DOMAIN}",
        P,
        "password",
        f"tina@{DOMAIN}",
        remote_ip="::ffff:192.0.2.25",
    ),
    _ok("2fa-app-password", f"tina@{DOMAIN}", token("tina-valid"), "app password", f"tina@{DOMAIN}"),
    _ok("app-password", A, token("alice-valid"), "app password", A),
    _ok("app-password-future-expiry", A, token("alice-future"), "app password", A),
    _ok("app-password-login-name-address", A, token("alice-address"), "app password", A),
    _ok("app-password-no-secret-fallback", A, token("alice-nosecret"), "app password", A),
    _ok("app-password-session-token", A, token("alice-session"), "app password", A),
    _ok("app-password-stores-no-password", A, token("alice-passwordless"), "app password", A),
    # User\Manager::checkPasswordNoLogging retries a failed login password urldecoded
    _ok("urlencoded-password", A, "correct+horse%20battery+staple", "password (argon2id)", A),
    _ok(
        "app-password-login-name-email",
        f"emma.stone@{DOMAIN}",
        token("emma-email"),
        "app password",
        f"emma.stone@{DOMAIN}",
    ),
    Case("wrong-password", A, "Tr0ub4dor&3-not-it", "refused", "wrong password"),
    Case("empty-password", A, "", "refused", "empty password"),
    Case("urlencoded-wrong-password", A, "correct+horse+battery%2Bstaple", "refused", "wrong password"),
    Case("4KiB-password", A, "x" * 4096, "refused", "wrong password"),
    Case("unknown-version-4", f"four@{DOMAIN}", P, "refused", "unknown Nextcloud hash version 4"),
    Case("empty-hash", f"nopw@{DOMAIN}", P, "refused", "empty password hash"),
    Case("disabled", f"dave@{DOMAIN}", P, "refused", "disabled"),
    Case("disabled-app-password", f"dave@{DOMAIN}", token("dave-valid"), "refused", "disabled"),
    Case("2fa-login-password", f"tina@{DOMAIN}", P, "refused", "two-factor"),
    Case("2fa-untrusted-network", f"tina@{DOMAIN}", P, "refused", "two-factor", remote_ip="198.51.100.7"),
    Case("app-password-expired", A, token("alice-expired"), "refused", "expired"),
    Case("app-password-wipe", A, token("alice-wipe"), "refused", "remote-wipe"),
    Case("app-password-invalidated", A, token("alice-invalid"), "refused", "invalidated"),
    Case("app-password-version-1", A, token("alice-v1"), "refused", "wrong password"),
    Case("app-password-other-login-name", A, token("alice-othername"), "refused", "made for login name"),
    Case("app-password-stale-after-reset", A, token("alice-stale"), "refused", "invalidated"),
    Case("app-password-one-time-type", A, token("alice-onetime"), "refused", "type 3"),
    Case("app-password-shorter-than-22", A, token("alice-short"), "refused", "wrong password"),
    Case("app-password-of-another-user", A, token("bob-valid"), "refused", "wrong password"),
    Case("unknown-user", f"carol@{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    Case("other-domain", "alice@other.tld", P, "unknown", "not served"),
    Case("no-domain", "alice", P, "unknown", "no domain"),
    Case("sql-quote", f"alice'--@{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    Case("sql-or", f"' OR '1'='1@{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    Case("sql-wildcard", f"%@{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    Case("trailing-space", f"alice @{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    # MariaDB finds dave's preferences for 'dave ' (PAD SPACE): still no LDAP/SAML user
    Case("trailing-space-user-with-preferences", f"dave @{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    Case("accented-lookalike", f"al\u00efce@{DOMAIN}", P, "unknown", "no such Nextcloud user"),
    Case("path-traversal", f"../alice@{DOMAIN}", P, "unknown", "'/'"),
    # identity safety: a name Dovecot could split differently, or into a bad path, is nobody's
    Case("two-at-signs", f"bob@evil.com@{DOMAIN}", P, "unknown", "more than one '@'"),
    Case("empty-domain", "alice@", P, "unknown", "empty domain"),
    Case("domain-folder-as-user", f"{DOMAIN}@", P, "unknown", "empty domain"),
    Case("empty-local-part", f"@{DOMAIN}", P, "unknown", "local part empty"),
    Case("unicode-digit-domain", "alice@\u0661\u0662.org", P, "unknown", "is not a domain name"),
    Case("fullwidth-domain", "alice@\uff45xample.org", P, "unknown", "is not a domain name"),
    Case("dot-local-part", f"..@{DOMAIN}", P, "unknown", "local part '.' or '..'"),
    Case("other-backend-user", f"ldapuser@{DOMAIN}", P, "unknown", "not a database user"),
]


#: What must never appear in any output: every password and app token of the
#: population (short or generic strings excepted) and the Nextcloud secrets.
SECRETS = sorted(
    {P, UNICODE_P, LONG_P, OLD_P, SECRET, PASSWORD_SALT, "Tr0ub4dor&3-not-it"}
    | {plain for _, _, plain, _ in TOKENS.values()}
)
