"""The three ways ncauth can fail, each with its own exit status upstream.

Keeping them apart is the whole point: a broken config or an unreachable database
must never be reported to Dovecot as "wrong password" (mail clients then discard the
saved password and users get locked out), so every layer raises one of these and the
front ends (checkpassword, CLI, daemon) map them to their protocol's codes.
"""

from __future__ import annotations


class NcauthError(Exception):
    """Base class: anything ncauth raises on purpose. ``exit_code`` is the ``ncauth``
    command's exit status for it (sysexits.h), as click's exceptions carry theirs; the
    checkpassword program turns every one of them into 111."""

    exit_code = 70  # EX_SOFTWARE


class ConfigError(NcauthError):
    """The configuration is missing, unreadable, unsafe or wrong; the message names
    the file and the key."""

    exit_code = 78  # EX_CONFIG


class TemporaryFailure(NcauthError):
    """A verdict could not be reached now (database down, timeout, resources);
    retrying later may succeed."""

    exit_code = 75  # EX_TEMPFAIL


class CannotWrite(NcauthError):
    """An output file the command was told to write cannot be written."""

    exit_code = 73  # EX_CANTCREAT
