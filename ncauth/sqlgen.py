"""SQL for Dovecot's own SQL passdb (the fallback mode) and least-privilege grants.

The generated ``password_query`` does in SQL what ncauth's policy does in Python,
as far as SQL can: the Nextcloud prefix ``1|``/``2|``/``3|`` is stripped and the inner
hash's identifier picks Dovecot's scheme (``{ARGON2ID}``, ``{ARGON2I}``,
``{BLF-CRYPT}``); the login maps to ``uid_lower`` by ``[accounts] match``; other
domains, disabled users, legacy hashes and (by default) two-factor users are left
out. It never uses ``%`` or ``$`` literals (Dovecot would expand them), and the
values Dovecot substitutes for its variables are SQL-escaped by Dovecot's driver.

What SQL mode cannot do, by design: app passwords, legacy SHA1/unprefixed hashes,
the trusted-networks exemption. Those need checkpassword or the daemon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ncauth import carry
from ncauth.config import ANY_DOMAIN, PLACEHOLDER_RE, QUOTA_PLACEHOLDER, TABLE_PREFIX_RE, Config
from ncauth.errors import ConfigError

DIALECTS = ("mysql", "postgresql", "sqlite")


@dataclass(frozen=True)
class DovecotVars:
    """How Dovecot spells the login and its parts inside a query."""

    user: str
    local: str
    domain: str


VARS = {
    "2.3": DovecotVars("%u", "%n", "%d"),
    "2.4": DovecotVars("%{user}", "%{user | username}", "%{user | domain}"),
}


def dialect_of(url: str) -> str:
    """The SQL dialect of an SQLAlchemy URL ("mysql+pymysql://…" → "mysql")."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return {
        "mysql": "mysql",
        "mariadb": "mysql",
        "postgresql": "postgresql",
        "postgres": "postgresql",
        "sqlite": "sqlite",
    }.get(scheme, scheme)


def quote(value: str) -> str:
    """An SQL string literal. Refuses what cannot be carried safely through Dovecot's
    variable expansion (``%``; ``$`` for 2.4's ``$SET:``/``$ENV:``) or a config file."""
    carry.check(value, "SQL literal", "the value")
    return "'" + value.replace("'", "''") + "'"


class QueryBuilder:
    """Builds the queries for one config, SQL dialect and Dovecot version."""

    def __init__(self, config: Config, dialect: str, dovecot: str = "2.3") -> None:
        if dialect not in DIALECTS:
            raise ConfigError(f"unknown SQL dialect {dialect!r} (choose from: {', '.join(DIALECTS)})")
        self.config = config
        self.dialect = dialect
        self.v = VARS[dovecot]
        self.p = config.nextcloud.table_prefix
        if not TABLE_PREFIX_RE.fullmatch(self.p):  # config validates this; queries rely on it
            raise ConfigError(f"table prefix {self.p!r} is not safe in SQL")

    # -- expressions -----------------------------------------------------------------

    def concat(self, *parts: str) -> str:
        if len(parts) == 1:
            return parts[0]
        if self.dialect == "mysql":
            return f"CONCAT({', '.join(parts)})"
        return "(" + " || ".join(parts) + ")"

    def login_var(self, var: str) -> str:
        return f"LOWER('{var}')"

    def domain_expr(self) -> str:
        """The login's domain; the default domain only for a login without any ``@``
        (Dovecot's user equals its username part), never for ``alice@``."""
        acc = self.config.accounts
        if acc.default_domain:
            return (
                f"CASE WHEN '{self.v.user}' = '{self.v.local}' THEN {quote(acc.default_domain)} "
                f"ELSE {self.login_var(self.v.domain)} END"
            )
        return self.login_var(self.v.domain)

    def exact(self, expr: str) -> str:
        """*expr* compared byte for byte: MySQL/MariaDB collations ignore trailing spaces
        (PAD SPACE) and, in the _ci ones, case and accents, so 'alice ' would find alice."""
        return f"BINARY {expr}" if self.dialect == "mysql" else expr

    def local_expr(self) -> str:
        """The mailbox's local part: the account's stored uid_lower (with match = "address",
        the username part of the login, which the WHERE clause makes exactly that of it)."""
        return self.login_var(self.v.local) if self.config.accounts.match == "address" else "u.uid_lower"

    def user_expr(self) -> str:
        """The canonical user, as the Python policy gives it: the stored uid_lower at the
        login's domain (one of [accounts] domains, which hold no '@'), or with match =
        "address" the stored uid_lower itself."""
        if self.config.accounts.match == "address":
            return "u.uid_lower"
        return self.concat("u.uid_lower", "'@'", self.domain_expr())

    def _unsafe_free(self, column: str, extra: str = "") -> str:
        """*column* holds none of the characters that cannot stand in a mail path or a
        Dovecot field ('/', '\\', NUL, 0x01, TAB, LF, CR; and *extra*), as ncauth.names
        requires of the Python path."""
        chars = [quote("/")] + ([quote(extra)] if extra else [])
        chars += [
            f"CHR({n})" if self.dialect == "postgresql" else f"CHAR({n})"
            for n in (92, 1, 9, 10, 13) + (() if self.dialect == "postgresql" else (0,))
        ]
        expr = column
        for c in chars:
            expr = f"REPLACE({expr}, {c}, '')"
        return f"{self.exact(expr)} = {self.exact(column)}"

    def template(self, text: str) -> str:
        """A ``[userdb]`` value with ``{user}``/``{local}``/``{domain}``/``{uid}`` as SQL
        (``{quota_bytes}`` has no SQL form: a ConfigError)."""
        exprs = {
            "user": self.user_expr(),
            "local": self.local_expr(),
            "domain": self.domain_expr(),
            "uid": "u.uid",
        }
        parts: list[str] = []
        pos = 0
        if QUOTA_PLACEHOLDER in PLACEHOLDER_RE.findall(text):
            raise ConfigError(
                f"[userdb] {{{QUOTA_PLACEHOLDER}}}: Nextcloud's quota rules (defaults, presets, sizes "
                "such as '2 GB' parsed as PHP does) cannot be expressed in SQL: use checkpassword or "
                "the daemon (--mode checkpassword or --mode lua)"
            )
        for m in PLACEHOLDER_RE.finditer(text):
            if m.start() > pos:
                parts.append(quote(text[pos : m.start()]))
            parts.append(exprs[m.group(1)])
            pos = m.end()
        if pos < len(text) or not parts:
            parts.append(quote(text[pos:]))
        return self.concat(*parts)

    def scheme_expr(self) -> str:
        """``{SCHEME}`` + inner hash, the scheme picked by the inner identifier (the 4th
        character is 'a' for $argon2…$, '2' for $2y$) as PHP's password_verify does."""
        inner = "SUBSTR(u.password, 3)"
        return (
            "CASE WHEN SUBSTR(u.password, 4, 8) = 'argon2id' THEN "
            + self.concat("'{ARGON2ID}'", inner)
            + " WHEN SUBSTR(u.password, 4, 7) = 'argon2i' THEN "
            + self.concat("'{ARGON2I}'", inner)
            + " ELSE "
            + self.concat("'{BLF-CRYPT}'", inner)
            + " END"
        )

    # -- queries ---------------------------------------------------------------------

    def _from_where(self) -> tuple[str, list[str]]:
        acc, p, v = self.config.accounts, self.p, self.v
        where: list[str] = []
        x = self.exact
        if acc.match == "email":
            address = self.concat(self.login_var(v.local), "'@'", self.domain_expr())
            source = (
                f"{p}users u JOIN {p}preferences e ON e.userid = u.uid AND e.appid = 'settings'"
                " AND e.configkey = 'email'"
            )
            where.append(f"{x('LOWER(e.configvalue)')} = {x(address)}")
            where.append(
                f"(SELECT COUNT(*) FROM {p}preferences e2 WHERE e2.appid = 'settings' AND e2.configkey = 'email'"
                f" AND {x('LOWER(e2.configvalue)')} = {x(address)}) = 1"
            )
        elif acc.match == "address":
            source = f"{p}users u"
            where.append(
                f"{x('u.uid_lower')} = {x(self.concat(self.login_var(v.local), quote('@'), self.domain_expr()))}"
                if acc.default_domain
                else f"{x('u.uid_lower')} = {x(self.login_var(v.user))}"
            )
        else:
            source = f"{p}users u"
            where.append(f"{x('u.uid_lower')} = {x(self.login_var(v.local))}")
        if acc.domains == (ANY_DOMAIN,):
            raise ConfigError(
                '[accounts] domains = ["*"]: SQL mode needs the served domains named, so that '
                "Dovecot's split of the login and ncauth's agree"
            )
        where.append(f"{x(self.domain_expr())} IN ({', '.join(quote(d) for d in acc.domains)})")
        # a row whose uid_lower is not a safe mailbox local part is nobody's mailbox (ncauth.names)
        where.append(f"{x('u.uid_lower')} NOT IN ('', '.', '..')")
        where.append(self._unsafe_free("u.uid_lower", "@" if acc.match == "email" else ""))
        if acc.groups:  # as policy.Authenticator._member: non-members have no mailbox
            groups = ", ".join(x(quote(g)) for g in acc.groups)
            where.append(
                f"EXISTS (SELECT 1 FROM {p}group_user gm WHERE {x('gm.uid')} = {x('u.uid')}"
                f" AND {x('gm.gid')} IN ({groups}))"
            )
        return source, where

    def _login_conditions(self) -> list[str]:
        acc, p, x = self.config.accounts, self.p, self.exact
        cond = [
            "SUBSTR(u.password, 1, 2) IN ('1|', '2|', '3|')",
            "(SUBSTR(u.password, 4, 7) = 'argon2i' OR SUBSTR(u.password, 4, 2) IN ('2y', '2a', '2b'))",
            (
                f"NOT EXISTS (SELECT 1 FROM {p}preferences d WHERE d.userid = u.uid AND d.appid = 'core'"
                " AND d.configkey = 'enabled' AND d.configvalue <> 'true')"
            ),
        ]
        if acc.app_password_required:
            raise ConfigError(
                "[accounts] app_password_required: only app passwords may log in, and SQL mode "
                "cannot check app passwords: use checkpassword or the daemon"
            )
        if acc.two_factor == "app-password-only":
            cond.append(
                f"NOT EXISTS (SELECT 1 FROM {p}twofactor_providers t WHERE t.uid = u.uid AND t.enabled = 1"
                " AND t.provider_id <> 'backup_codes')"
            )
            if acc.two_factor_enforced:
                if acc.two_factor_enforced_groups:
                    groups = ", ".join(x(quote(g)) for g in acc.two_factor_enforced_groups)
                    cond.append(
                        f"NOT EXISTS (SELECT 1 FROM {p}group_user g WHERE {x('g.uid')} = {x('u.uid')}"
                        f" AND {x('g.gid')} IN ({groups}))"
                    )
                elif acc.two_factor_enforced_excluded_groups:
                    groups = ", ".join(x(quote(g)) for g in acc.two_factor_enforced_excluded_groups)
                    cond.append(
                        f"EXISTS (SELECT 1 FROM {p}group_user g WHERE {x('g.uid')} = {x('u.uid')}"
                        f" AND {x('g.gid')} IN ({groups}))"
                    )
                else:
                    raise ConfigError(
                        "[accounts] two_factor_enforced for everybody: with two_factor = "
                        "\"app-password-only\" nobody could log in through SQL mode, which has no "
                        "app passwords: use checkpassword or the daemon"
                    )
        return cond

    def userdb_columns(self, prefix: str) -> list[str]:
        return [f"{self.template(value)} AS {prefix}{key}" for key, value in self.config.userdb.items()]

    def password_query(self) -> str:
        source, where = self._from_where()
        columns = [
            f"{self.user_expr()} AS user",
            f"{self.scheme_expr()} AS password",
            *self.userdb_columns("userdb_"),
        ]
        return _statement(columns, source, where + self._login_conditions())

    def user_query(self) -> str:
        """Userdb lookups (LMTP delivery, ``doveadm user``): disabled users still exist."""
        source, where = self._from_where()
        columns = self.userdb_columns("") or [f"{self.user_expr()} AS user"]
        return _statement(columns, source, where)


def _statement(columns: list[str], source: str, where: list[str]) -> str:
    return f"SELECT {', '.join(columns)} FROM {source} WHERE {' AND '.join(where)}"


# --- grants --------------------------------------------------------------------------

#: Columns each mode reads, per Nextcloud table (without prefix).
SQL_MODE_COLUMNS = {
    "users": ("uid", "uid_lower", "password"),
    "preferences": ("userid", "appid", "configkey", "configvalue"),
    "twofactor_providers": ("uid", "provider_id", "enabled"),
    "group_user": ("uid", "gid"),
}


def ncauth_columns(config: Config | None = None) -> dict[str, tuple[str, ...]]:
    """Columns ncauth's own store reads under *config*, per table (without prefix): derived
    from the store's table definitions, so the grants can never fall behind a new query;
    ``oc_appconfig`` only where a ``[userdb]`` value uses ``{quota_bytes}``."""
    from ncauth.store import Tables

    quota = config is not None and config.uses_placeholder(QUOTA_PLACEHOLDER)
    return {
        table.name: tuple(column.name for column in table.columns)
        for table in Tables("").read_by(quota=quota)
    }


def grants(
    dialect: str,
    prefix: str,
    database: str,
    user: str,
    columns: dict[str, tuple[str, ...]],
    host: str = "localhost",
) -> str:
    """``CREATE USER`` and column-level ``GRANT SELECT`` statements for *user*."""
    if dialect == "sqlite":
        return (
            "-- SQLite has no users or grants: give the reading user (dovecot for checkpassword, the\n"
            "-- daemon's user) read access to the database file and nothing else, e.g.\n"
            "--   setfacl -m u:dovecot:r /path/to/nextcloud/data/owncloud.db\n"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", user) or not re.fullmatch(r"[A-Za-z0-9_$-]+", database):
        raise ConfigError(
            f"database user {user!r} or database {database!r}: only letters, digits, '_', '.', '-'"
        )
    lines: list[str] = []
    if dialect == "mysql":
        who = f"'{user}'@'{host}'"
        lines.append(f"CREATE USER IF NOT EXISTS {who} IDENTIFIED BY 'CHANGE-ME';  -- choose a password")
        for table, cols in columns.items():
            lines.append(f"GRANT SELECT ({', '.join(cols)}) ON `{database}`.`{prefix}{table}` TO {who};")
    else:
        lines.append(f"CREATE ROLE \"{user}\" LOGIN PASSWORD 'CHANGE-ME';  -- choose a password")
        lines.append(f"GRANT CONNECT ON DATABASE \"{database}\" TO \"{user}\";")
        lines.append(f"GRANT USAGE ON SCHEMA public TO \"{user}\";")
        for table, cols in columns.items():
            lines.append(f"GRANT SELECT ({', '.join(cols)}) ON \"{prefix}{table}\" TO \"{user}\";")
    return "\n".join(lines) + "\n"


def report(
    config: Config,
    dialect: str,
    dovecot: str,
    database: str,
    *,
    dovecot_user: str = "dovecot_nc",
    ncauth_user: str = "ncauth",
    host: str = "localhost",
) -> str:
    """What ``ncauth sql`` prints: the queries (as comments: they hold Dovecot variables)
    and the grants of both database users."""
    q = QueryBuilder(config, dialect, dovecot)
    prefix = config.nextcloud.table_prefix
    head = f"-- ncauth sql --dialect {dialect} --dovecot {dovecot} (from {config.path})\n"
    try:
        queries = (
            "-- Dovecot SQL passdb (fallback mode): Dovecot fills in and escapes its variables.\n"
            f"-- password_query = {q.password_query()}\n"
            f"-- user_query = {q.user_query()}\n\n"
            "-- Least privilege: each database user may read only the columns it needs.\n"
            f"-- For Dovecot's SQL passdb ({dovecot_user}):\n"
            + grants(dialect, prefix, database, dovecot_user, SQL_MODE_COLUMNS, host)
        )
    except ConfigError as exc:
        # this config cannot run in SQL mode; ncauth's own grants are still what the other modes need
        queries = (
            f"-- No SQL passdb for this config: {exc}\n\n-- Least privilege: only the columns ncauth reads.\n"
        )
    return (
        head
        + queries
        + f"\n-- For ncauth's checkpassword program and daemon ({ncauth_user}):\n"
        + grants(dialect, prefix, database, ncauth_user, ncauth_columns(config), host)
    )
