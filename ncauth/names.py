"""What a domain, a login and a mailbox name are: the one rule for each.

Dovecot splits a user name at its *first* ``@`` (``%n``/``%d``, ``username``/``domain``),
mail paths are built from those parts, and Postfix looks addresses up by them. So a
name ncauth hands back must split one way only, into parts that are safe in a path:
exactly one ``@``, a local part that is the Nextcloud account's own ``uid_lower``, and a
domain made of ASCII letters, digits and hyphens. Config loading, login parsing and
every answer use the functions here, so the rule cannot drift between them.
Standard library only (checkpassword's relay path imports it).
"""

from __future__ import annotations

import re

#: RFC 1035 "LDH" labels (IDNA A-labels such as ``xn--bcher-kva`` are LDH too), lower case.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
#: Characters that must never reach a mail path or a Dovecot field.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def is_domain(text: str) -> bool:
    """A lower-case host name: dot-separated LDH labels, none empty, at most 253
    characters. Unicode letters and digits are not (``a@١٢.org`` and fullwidth
    ``ｅxample.org`` would otherwise name directories Dovecot and Postfix disagree on)."""
    return 0 < len(text) <= 253 and all(_LABEL.fullmatch(label) for label in text.split("."))


def path_problem(name: str) -> str:
    """Why *name* (a local part, a uid) cannot stand in a mail path, or "" when it can."""
    if not name:
        return "empty"
    if name in (".", ".."):
        return "'.' or '..'"
    if _UNSAFE.search(name):
        return "contains '/', '\\' or control characters"
    if any("\udc80" <= c <= "\udcff" for c in name):
        return "not valid UTF-8"
    return ""


def local_part_problem(local: str) -> str:
    """Why *local* cannot be the local part of a mailbox name, or "" when it can."""
    if "@" in local:
        return "contains '@'"
    return path_problem(local)


def mailbox_name(local: str, domain: str) -> str | None:
    """``local@domain`` when it splits back into exactly these parts, else None."""
    if local_part_problem(local) or not is_domain(domain):
        return None
    return f"{local}@{domain}"


def split_address(address: str) -> tuple[str, str] | None:
    """(local, domain) of an address with exactly one ``@``, else None."""
    local, at, domain = address.partition("@")
    if not at or "@" in domain:
        return None
    return local, domain
