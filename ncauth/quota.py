"""A user's Nextcloud quota, read as Nextcloud reads it, written as Dovecot reads it.

Nextcloud (lib/private/User/User.php, ``User::getQuota()``; the same on 28 to 32):

* the user's value is ``oc_preferences`` (``files``, ``quota``); no row means ``default``;
* ``default`` (compared exactly, case-sensitively) is replaced by the ``files`` app's
  ``default_quota`` (``oc_appconfig``), ``none`` when that row is missing;
* except that with ``allow_unlimited_quota`` set to anything but ``'1'``, a missing
  ``default_quota`` becomes the first entry of ``quota_preset`` (default
  ``'1 GB, 5 GB, 10 GB'``) that is not empty, ``'0'``, ``default`` or ``none``
  (``array_filter(array_map('trim', explode(',', …)))`` minus ``default``/``none``); a
  stored ``default_quota`` (even ``none``) still wins.

``User::getQuotaBytes()`` (NC 28+) turns that string into bytes: ``none`` (exactly) is
``FileInfo::SPACE_UNLIMITED`` (-3), anything ``OCP\\Util::computerFileSize`` rejects is
``FileInfo::SPACE_UNKNOWN`` (-2), anything else the parsed number. The storage wrapper that
enforces it (lib/private/Files/Storage/Wrapper/Quota.php, ``free_space()``) treats every
negative quota as no limit at all, and a quota of 0 as no space. So here: ``none``, an
unparsable value and a negative number are *unlimited* (None); 0 is a limit of 0 bytes.

Not mirrored: the ``files`` app's ``max_quota`` only bounds what an admin may *set* through
the provisioning API (apps/provisioning_api UsersController ``editUser``); ``getQuota()``
never reads it. Apps that override the quota through ``GetQuotaEvent`` are invisible from
the database.

Dovecot: 2.3 takes the limit as the userdb field ``quota_rule`` (src/plugins/quota/
quota-util.c ``quota_rule_parse_limits``: ``storage=`` counts in KiB unless a unit follows,
``bytes=`` counts bytes); 2.4 as ``quota_storage_size`` (a size setting: a bare number is
bytes, src/lib/str-parse.c ``str_parse_get_size``; "unlimited" or 0 is no limit,
src/plugins/quota/quota-settings.c ``quota_settings_check``). Both read a limit of 0 as
*no limit* (2.3 quota.c ``quota_root_get_rule_limits``: "if default rule limits are 0, user
has unlimited quota"), so Nextcloud's "0 B" is written as 1 byte, which refuses every
message, and "unlimited" as 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

#: ``'1 GB, 5 GB, 10 GB'``: Nextcloud's default ``quota_preset`` (User::getQuota()).
DEFAULT_QUOTA_PRESET = "1 GB, 5 GB, 10 GB"

#: The largest limit Dovecot 2.3 stores (``int64_t bytes_limit``); anything above is unlimited.
DOVECOT_MAX_BYTES = 2**63 - 1

_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "p": 1024**5,
    "pb": 1024**5,
}

# PHP's whitespace for numeric strings and for the string-to-float cast: " \t\n\r\v\f".
_WS = " \t\n\r\x0b\x0c"
# PHP 8 is_numeric(): optional leading and trailing whitespace around a decimal number
# (no hex, no "inf"/"nan", ASCII digits only: [0-9], not \d, which takes any script's digits).
_NUMERIC = re.compile(rf"[{_WS}]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?[{_WS}]*")
# The longest leading number of a string, as PHP's (float) cast reads it (zend_strtod).
_LEADING_FLOAT = re.compile(rf"[{_WS}]*([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)")
# Nextcloud's unit pattern '#([kmgtp]?b?)$#si', leftmost match; like PCRE's, Python's ``$``
# also matches before one final newline.
_UNIT = re.compile(r"([kmgtp]?b?)$")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_PHP_INT_MAX = 2**63 - 1


def _php_strtolower(text: str) -> str:
    """PHP 8.2+ ``strtolower``: ASCII letters only, whatever the locale."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _php_number(numeric: str) -> int | float:
    """``0 + $numericString`` (``OCP\\Util::numericToNumber``): an int when the string is an
    integer that fits PHP_INT, a float otherwise."""
    text = numeric.strip(_WS)
    # more than 19 significant digits cannot fit PHP_INT (and int() refuses 4300 and more)
    if _INTEGER.fullmatch(text) and len(text.lstrip("+-").lstrip("0")) <= 19:
        value = int(text)
        if -_PHP_INT_MAX - 1 <= value <= _PHP_INT_MAX:
            return value
    return float(text)


def _php_round(value: float) -> float:
    """PHP's ``round($value)`` (mode PHP_ROUND_HALF_UP, no places), as PHP 8.4's
    ext/standard/math.c ``_php_math_round`` does it: values of 1e15 and more are returned as
    they are, others rounded half away from zero on their exact binary value. (PHP 8.3 and
    older pre-round to 15 significant digits, which differs only for values whose 16th digit
    decides, e.g. 0.49999999999999994: never a size someone types.)"""
    if not math.isfinite(value) or value == 0.0 or abs(value) >= 1e15:
        return value
    return float(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _php_float_string(value: float) -> str:
    """``(string)$float`` under PHP's default ``precision = 14``: 14 significant digits,
    which is why Nextcloud reads "1 PB" as 1125899906842600 bytes, not 1125899906842624."""
    return f"{value:.14G}"


def computer_file_size(text: str) -> int | float | None:
    """Nextcloud's ``OCP\\Util::computerFileSize`` (lib/public/Util.php on NC 31+,
    ``OC_Helper::computerFileSize`` in lib/private/legacy/OC_Helper.php on 26 to 30):
    the number of bytes *text* means, or None where Nextcloud returns false.

    Lower-cased first (ASCII); a numeric string (PHP ``is_numeric``: whitespace around a
    decimal, sign, exponent) is taken as bytes as it is, fractions and all. Otherwise
    the leading number (PHP's float cast: 0 without one) is multiplied by the unit the
    string *ends* with (b, k, kb, m, mb, g, gb, t, tb, p, pb: so "1 xb" is 1 byte and
    "gb" is 0), rounded half away from zero, and passed through PHP's float-to-string
    conversion (14 significant digits). A string ending in anything else, trailing space
    included, is false. Where PHP throws (a non-finite product: "1e400 kb") this is None
    too: Nextcloud then reads no quota at all."""
    lower = _php_strtolower(text)
    if _NUMERIC.fullmatch(lower):
        return _php_number(lower)
    lead = _LEADING_FLOAT.match(lower)
    number = float(lead.group(1)) if lead else 0.0
    unit = _UNIT.search(lower)
    if unit is None or unit.group(1) not in _UNITS:
        return None
    product = _php_round(number * _UNITS[unit.group(1)])
    if not math.isfinite(product):
        return None  # PHP: 0 + "INF" throws a TypeError
    return _php_number(_php_float_string(product))


@dataclass(frozen=True)
class QuotaSettings:
    """The rows Nextcloud's quota depends on; None where there is no row (or NULL, which
    ``getUserValue``/``getAppValue`` also treat as missing)."""

    user_quota: str | None = None  # oc_preferences files/quota
    default_quota: str | None = None  # oc_appconfig files/default_quota
    allow_unlimited_quota: str | None = None  # oc_appconfig files/allow_unlimited_quota
    quota_preset: str | None = None  # oc_appconfig files/quota_preset


def _php_trim(text: str) -> str:
    return text.strip(" \t\n\r\0\x0b")


def effective_quota(settings: QuotaSettings) -> str:
    """The string ``User::getQuota()`` returns (see the module docstring)."""
    quota = settings.user_quota if settings.user_quota is not None else "default"
    if quota != "default":
        return quota
    if settings.default_quota is not None:
        return settings.default_quota
    # getAppValue() returns a stored '' as it is: only a missing row takes the default
    allow_unlimited = settings.allow_unlimited_quota in (None, "1")
    if not allow_unlimited:
        presets = [
            _php_trim(p)
            for p in (DEFAULT_QUOTA_PRESET if settings.quota_preset is None else settings.quota_preset).split(
                ","
            )
        ]
        # array_filter() drops '' and '0'; array_diff() drops 'default' and 'none'
        usable = [p for p in presets if p not in ("", "0", "default", "none")]
        if usable:
            return usable[0]
    return "none"


def quota_bytes(settings: QuotaSettings) -> int | None:
    """The limit in bytes Nextcloud enforces for this user, None when it enforces none.

    ``User::getQuotaBytes()`` plus the storage wrapper's reading of it: ``none``, an
    unparsable value, a negative or non-finite number mean no limit; a fraction of a byte
    is cut off (no byte more than Nextcloud allows); a limit beyond what Dovecot can store
    (2**63 - 1 bytes, eight exbibytes) is no limit either."""
    quota = effective_quota(settings)
    if quota == "none":
        return None
    value = computer_file_size(quota)
    if value is None or value < 0 or not math.isfinite(value):
        return None
    limit = math.floor(value)
    return limit if limit <= DOVECOT_MAX_BYTES else None


def dovecot_bytes(limit: int | None) -> str:
    """*limit* as both Dovecot versions read a byte count in the userdb: "0" for no limit
    (their convention), "1" for Nextcloud's zero (a 0 would lift the limit instead)."""
    if limit is None:
        return "0"
    return str(max(limit, 1))


def dovecot23_quota_rule(limit: int | None) -> str:
    """The Dovecot 2.3 userdb ``quota_rule`` value: ``*:bytes=N`` (``storage=`` would count KiB)."""
    return f"*:bytes={dovecot_bytes(limit)}"


def dovecot24_quota_storage_size(limit: int | None) -> str:
    """The Dovecot 2.4 userdb ``quota_storage_size`` value: bytes, or ``unlimited``."""
    return "unlimited" if limit is None else dovecot_bytes(limit)
