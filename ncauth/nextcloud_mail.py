"""The ``occ mail:provisioning:create`` command that gives every Nextcloud user a Mail app
account on this server, logging in the way ncauth expects under the configured ``match``.

Nextcloud Mail's provisioning (nextcloud/mail ``lib/Command/CreateProvisioning.php``,
options in ``ACreateOrUpdateProvisioningCommand::FIELDS``) fills ``%USERID%`` (the
Nextcloud uid) and ``%EMAIL%`` (the user's e-mail address) into the account's address and
its IMAP and SMTP logins, and logs in with the user's own login password (no master
password). So the login it sends must be one ncauth maps back to that user:
``local-part``: ``%USERID%@<domain>``; ``address``: ``%USERID%``; ``email``: ``%EMAIL%``.
Two-factor users: Mail sends the login password, which ncauth refuses for them unless the
Nextcloud server's address is in ``[accounts] trusted_networks``.
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

from ncauth.config import ANY_DOMAIN, Config
from ncauth.errors import ConfigError


class Endpoints(NamedTuple):
    """Where Nextcloud Mail reaches this server; ssl = implicit TLS, tls = STARTTLS."""

    imap_host: str
    smtp_host: str
    imap_port: int = 993
    imap_ssl_mode: str = "ssl"
    smtp_port: int = 587
    smtp_ssl_mode: str = "tls"


#: Nextcloud Mail's SSL mode names (ACreateOrUpdateProvisioningCommand::SSL_MODES)
SSL_MODES = ("none", "ssl", "tls")


def login_template(config: Config) -> tuple[str, str]:
    """(provisioning domain, login/e-mail template) for the configured ``match``."""
    acc = config.accounts
    if acc.match == "address":
        return "*", "%USERID%"
    if acc.match == "email":  # Mail provisions users whose address is in this domain
        return (acc.domains[0] if len(acc.domains) == 1 else "*"), "%EMAIL%"
    domain = acc.default_domain or acc.domains[0]
    if domain == ANY_DOMAIN:  # config loading allows "*" only with match = "address"
        raise ConfigError(f'{config.path}: [accounts] domains = ["*"] names no domain for %USERID%@…')
    return "*", f"%USERID%@{domain}"


def command(config: Config, endpoints: Endpoints, occ: str = "occ") -> str:
    """The shell command, each argument quoted, with comments on what it assumes."""
    for mode in (endpoints.imap_ssl_mode, endpoints.smtp_ssl_mode):
        if mode not in SSL_MODES:
            raise ConfigError(f"SSL mode {mode!r}: Nextcloud Mail knows {', '.join(SSL_MODES)}")
    for port in (endpoints.imap_port, endpoints.smtp_port):
        if not 1 <= port <= 65535:
            raise ConfigError(f"port {port}: not between 1 and 65535")
    domain, template = login_template(config)
    args = [
        *shlex.split(occ),
        "mail:provisioning:create",
        f"--provisioning-domain={domain}",
        f"--email-template={template}",
        f"--imap-user={template}",
        f"--imap-host={endpoints.imap_host}",
        f"--imap-port={endpoints.imap_port}",
        f"--imap-ssl-mode={endpoints.imap_ssl_mode}",
        f"--smtp-user={template}",
        f"--smtp-host={endpoints.smtp_host}",
        f"--smtp-port={endpoints.smtp_port}",
        f"--smtp-ssl-mode={endpoints.smtp_ssl_mode}",
        "--no-master-password",
    ]
    notes = [
        f"# Nextcloud Mail, one account per user on this server (from {config.path}, match = {config.accounts.match}).",
        "# Run it as the web server's user in Nextcloud's folder, then `occ mail:provisioning:apply`.",
    ]
    acc = config.accounts
    if acc.match == "local-part" and len(acc.domains) > 1 and not acc.default_domain:
        notes.append(
            f"# Several domains are served: every account gets {acc.domains[0]}; set default_domain to choose."
        )
    if acc.two_factor == "app-password-only" and not acc.trusted_networks:
        notes.append(
            "# Two-factor users: Mail logs in with their login password, which ncauth refuses for them"
            " unless the Nextcloud server's address is in [accounts] trusted_networks."
        )
    return "\n".join(notes) + "\n" + " ".join(shlex.quote(a) for a in args) + "\n"
