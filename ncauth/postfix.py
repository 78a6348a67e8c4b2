"""The Postfix ``main.cf`` lines that make Nextcloud the mail server's one account list:
recipients and sender ownership from the daemon's socketmap (``[postfix] socket``), SMTP
AUTH through Dovecot's SASL socket, delivery to Dovecot over LMTP.

Why ``proxy:`` by default: Debian's master.cf runs smtpd chrooted in /var/spool/postfix,
where a socket outside the jail does not exist ("connect to /run/ncauth/postfix.sock: No
such file or directory", every RCPT 451; tests/test_postfix_e2e.py shows both). proxymap(8)
runs outside the chroot and opens the socketmap for it; ``proxy_read_maps`` already names
``$virtual_mailbox_maps`` and ``$smtpd_sender_login_maps`` by default. ``direct`` drops
the extra hop for an smtpd that runs unchrooted.
"""

from __future__ import annotations

from ncauth.config import ANY_DOMAIN, Config
from ncauth.errors import ConfigError

#: the daemon's socketmap names (``ncauth.daemon.MAPS``; a test keeps them equal)
RECIPIENTS = "recipients"
SENDERS = "senders"
#: what main.cf would split, expand or cut a table name at
_UNSAFE = frozenset(" \t\r\n,:$(){}#=\\\"'")


def table(socket: str, name: str, *, direct: bool = False) -> str:
    """The Postfix table for the daemon's socketmap *name* on *socket*."""
    return f"{'' if direct else 'proxy:'}socketmap:unix:{socket}:{name}"


def main_cf(config: Config, *, direct: bool = False) -> str:
    """``main.cf`` text for *config*, comments included; raises ConfigError when the
    config has no ``[postfix] socket`` or nothing Postfix can list as its domains."""
    socket = config.postfix.socket
    if not socket:
        raise ConfigError(
            f"{config.path}: [postfix] socket is not set: the daemon serves Postfix's maps only "
            'there (e.g. socket = "/run/ncauth/postfix.sock")'
        )
    if bad := sorted(set(socket) & _UNSAFE):
        raise ConfigError(f"{config.path}: [postfix] socket: main.cf cannot name a path with {bad!r} in it")
    domains = config.accounts.domains
    if ANY_DOMAIN in domains:
        raise ConfigError(
            f"{config.path}: [accounts] domains = [{ANY_DOMAIN!r}]: Postfix needs the mail domains "
            "listed in virtual_mailbox_domains; list them in [accounts] domains"
        )
    recipients = table(socket, RECIPIENTS, direct=direct)
    senders = table(socket, SENDERS, direct=direct)
    where = (
        "# direct socketmap: only for an smtpd that is NOT chrooted (master.cf chroot column n)\n"
        if direct
        else "# proxy: proxymap(8) runs outside smtpd's chroot (keep its master.cf chroot column n);\n"
        "# proxy_read_maps' default already names $virtual_mailbox_maps and $smtpd_sender_login_maps\n"
    )
    return (
        f"# Postfix main.cf for ncauth, from {config.path}: Nextcloud's users are the account list.\n"
        "# Replace any virtual_mailbox_maps, smtpd_sender_login_maps and hand-kept lists you had.\n"
        + where
        + f"virtual_mailbox_domains = {' '.join(domains)}\n"
        "# an enabled Nextcloud user (in [accounts] groups, if set) has a mailbox; a database\n"
        "# outage is a temporary error (451 4.3.0), never \"user unknown\"\n"
        f"virtual_mailbox_maps = {recipients}\n"
        "virtual_transport = lmtp:unix:private/dovecot-lmtp\n"
        "# SMTP AUTH checks the Nextcloud password through Dovecot: the auth socket of the\n"
        "# ncauth dovecot-config snippet (paths under private/ are relative to the queue\n"
        "# directory, /var/spool/postfix, chroot or not)\n"
        "smtpd_sasl_type = dovecot\n"
        "smtpd_sasl_path = private/auth\n"
        "smtpd_sasl_auth_enable = yes\n"
        "# who may send as an address of ours: the login names of its mailbox's owner\n"
        f"smtpd_sender_login_maps = {senders}\n"
        "# reject_sender_login_mismatch, not reject_known_sender_login_mismatch: the \"known\"\n"
        "# form checks only addresses the map knows, so any logged-in user could send as an\n"
        "# address it does not (a disabled or deleted user's, any other domain's). Merge this\n"
        "# into an smtpd_sender_restrictions you already have.\n"
        "smtpd_sender_restrictions = reject_sender_login_mismatch\n"
        "#\n"
        "# master.cf: nothing to change for Debian's default (smtpd chrooted, proxymap not).\n"
        "# Dovecot: protocols = imap lmtp, and the LMTP socket this transport names:\n"
        "#   service lmtp {\n"
        "#     unix_listener /var/spool/postfix/private/dovecot-lmtp {\n"
        "#       mode = 0600\n"
        "#       user = postfix\n"
        "#       group = postfix\n"
        "#     }\n"
        "#   }\n"
    )
