"""The three ways ncauth can fail, each with its own exit status upstream.

Keeping them apart is the whole point: a broken config or an unreachable database
must never be reported to Dovecot as "wrong password" (mail clients then discard the
saved password and users get locked out), so every layer raises one of these and the
front ends (checkpassword, CLI, daemon) map them to their protocol's codes.
"""

from __future__ import annotations


class NcauthError(Exception):
    """Base class: anything ncauth raises on purpose."""


class ConfigError(NcauthError):
    """The configuration is missing, unreadable, unsafe or wrong; the message names
    the file and the key."""


class TemporaryFailure(NcauthError):
    """A verdict could not be reached now (database down, timeout, resources);
    retrying later may succeed."""
