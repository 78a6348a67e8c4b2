"""The login password Nextcloud keeps inside an app-password token, decrypted as Nextcloud does.

Why: an admin's ``occ user:resetpassword`` leaves tokens alone. Nextcloud notices the
change only when a token is next used: ``OC\\User\\Session::checkTokenCredentials``
(lib/private/User/Session.php) decrypts the login password stored with the token and
checks it against the user's current hash; on a mismatch it refuses the token and sets
``password_invalid``. ncauth must make the same check, on every use (it never writes
``last_check``), or it would keep accepting app passwords Nextcloud refuses.

How a token stores the password (lib/private/Authentication/Token/PublicKeyTokenProvider.php):

* ``newToken``: a fresh RSA key pair (2048 bits; 4096 when the password is longer than
  250 bytes). ``public_key`` = the PEM public key; ``private_key`` =
  ``Crypto::encrypt(pem_private_key, app_password . secret)``; ``password`` =
  ``base64(openssl_public_encrypt(login_password, OPENSSL_PKCS1_OAEP_PADDING))`` (RSA-OAEP,
  SHA-1, MGF1-SHA-1), or NULL for a token made without a password.
* ``getPassword`` → ``decrypt`` (with ``app_password . secret``, then, as a fallback for
  instances whose secret was once empty, with the bare app password) →
  ``decryptPassword`` (base64, then RSA-OAEP with the private key).

``Crypto::decrypt`` (lib/private/Security/Crypto.php, ``decryptWithoutSecret``) reads
``hex(ciphertext)|iv|hex(hmac)[|version]``:

* version ``3`` (what Nextcloud ≥ 26 writes): ``k = hash_hkdf('sha512', password)`` (64
  bytes, empty salt and info); encryption key ``k[:32]``, HMAC key ``k[32:]``; IV hex.
* version ``2`` (and any other value PHP finds ``>= '2'``): both keys are the password; IV hex.
* three fields (Nextcloud < 21): both keys are the password; the IV field is used as raw bytes.
* HMAC: ``HMAC-SHA512(key = hex(sha512(hmac_key . 'a')), message = field0 . field1)``, the
  fields as stored text, compared in constant time (``hash_equals``) before decrypting.
* cipher: phpseclib 2's ``AES::setPassword(encryption_key)``: PBKDF2-HMAC-SHA1, salt
  ``"phpseclib"`` (Rijndael's ``$password_default_salt``), 1000 rounds, 16 bytes, so
  AES-128-CBC; the IV is cut or NUL-padded to 16 bytes; the ciphertext is NUL-padded to
  whole blocks; unpadding reads only the last byte (1..16), as phpseclib's ``_unpad``.

Checked against Nextcloud's own fixed vectors (tests/lib/Security/CryptoTest.php) and
against tokens made by PHP (tests/vectors/make_token_vectors.php).

The ``cryptography`` package is imported on first use only: a login that is no app
password (or whose token stores no password) never pays for it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re

__all__ = [
    "TokenDecryptError",
    "crypto_decrypt",
    "decrypt_password",
    "decrypt_private_key",
    "stored_login_password",
]

_PHPSECLIB_SALT = b"phpseclib"  # phpseclib 2 Crypt\Rijndael::$password_default_salt
_PHPSECLIB_ROUNDS = 1000  # Crypt\Base::setPassword's default count
_AES128 = 16  # Rijndael::$key_length: setPassword derives this many bytes
_BLOCK = 16
_PHP_WS = " \t\n\r\v\f"
# compiled on first use (re caches it): importing this module stays cheap
_PHP_NUMERIC = r"[ \t\n\r\v\f]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[ \t\n\r\v\f]*"
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class TokenDecryptError(Exception):
    """A token's stored key or password cannot be decrypted: wrong app password or
    secret, or malformed/tampered columns. Nextcloud refuses such a token (it throws
    ``InvalidTokenException``, or fails the request), so ncauth must refuse it too.
    Messages never contain key material, ciphertext or passwords."""


def _raw(text: str) -> bytes:
    """*text* as the bytes PHP would hold: UTF-8, undecodable bytes kept (surrogateescape),
    any other lone surrogate encoded rather than raised on."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _hex2bin(text: str, what: str) -> bytes:
    """``Crypto::hex2bin``: only non-empty, even-length, all-hex text (ctype_xdigit)."""
    if not text or len(text) % 2 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise TokenDecryptError(f"{what} is not hex")
    return bytes.fromhex(text)


def _php_at_least_2(version: str) -> bool:
    """PHP 8's ``$version >= '2'``: numerically if *version* is a numeric string, else
    byte-wise (``'x' >= '2'`` is true, ``'' >= '2'`` false)."""
    if re.fullmatch(_PHP_NUMERIC, version, re.ASCII):
        return float(version.strip(_PHP_WS)) >= 2
    return _raw(version) >= b"2"


def _hkdf_sha512(ikm: bytes) -> bytes:
    """PHP ``hash_hkdf('sha512', $ikm)``: RFC 5869, 64 bytes, empty salt and info."""
    if not ikm:
        raise TokenDecryptError("empty key")  # PHP throws ValueError here
    prk = hmac.new(b"\0" * 64, ikm, hashlib.sha512).digest()
    return hmac.new(prk, b"\x01", hashlib.sha512).digest()


def crypto_decrypt(authenticated_ciphertext: str, password: bytes) -> bytes:
    """``OC\\Security\\Crypto::decrypt($ciphertext, $password)`` with a non-empty password
    (``decryptWithoutSecret``): check the HMAC, then AES-CBC-decrypt. Raises
    TokenDecryptError for anything Nextcloud would throw on."""
    parts = authenticated_ciphertext.split("|")
    if not 3 <= len(parts) <= 4:
        raise TokenDecryptError("authenticated ciphertext could not be decoded")
    ciphertext = _hex2bin(parts[0], "ciphertext")
    iv = _raw(parts[1])
    mac = _hex2bin(parts[2], "hmac")
    encryption_key = hmac_key = password
    if len(parts) == 4:
        version = parts[3]
        if _php_at_least_2(version):
            iv = _hex2bin(parts[1], "iv")
        if version == "3":
            material = _hkdf_sha512(password)
            encryption_key, hmac_key = material[:32], material[32:]
    # Crypto::calculateHMAC: phpseclib Hash('sha512') keyed with the *hex* sha512 of key.'a'.
    mac_key = hashlib.sha512(hmac_key + b"a").hexdigest().encode("ascii")
    message = _raw(parts[0] + parts[1])
    if not hmac.compare_digest(hmac.new(mac_key, message, hashlib.sha512).digest(), mac):
        raise TokenDecryptError("HMAC does not match")
    key = hashlib.pbkdf2_hmac("sha1", encryption_key, _PHPSECLIB_SALT, _PHPSECLIB_ROUNDS, _AES128)
    iv = iv[:_BLOCK].ljust(_BLOCK, b"\0")
    ciphertext += b"\0" * (-len(ciphertext) % _BLOCK)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plaintext = decryptor.update(ciphertext) + decryptor.finalize()
    pad = plaintext[-1]
    if not 1 <= pad <= _BLOCK:
        raise TokenDecryptError("decryption failed")
    return plaintext[:-pad]


def decrypt_private_key(private_key_enc: str, app_password: bytes, secret: str) -> bytes:
    """``PublicKeyTokenProvider::decrypt``: the token's PEM private key, decrypted with
    app password + ``secret``, else (Nextcloud's fallback for a once-empty secret) with
    the bare app password."""
    try:
        return crypto_decrypt(private_key_enc, app_password + _raw(secret))
    except TokenDecryptError:
        if not secret:
            raise
    return crypto_decrypt(private_key_enc, app_password)


def _php_base64_decode(text: str) -> bytes:
    """PHP's non-strict ``base64_decode``: characters outside the alphabet (and ``=``)
    are skipped, a lone trailing character is dropped."""
    raw = _raw(text)
    data = raw.translate(None, bytes(set(range(256)).difference(_B64_ALPHABET)))
    if len(data) % 4 == 1:
        data = data[:-1]
    return base64.b64decode(data + b"=" * (-len(data) % 4))


@functools.cache
def _skip_rsa_check() -> dict[str, bool]:
    """``load_pem_private_key``'s option to skip the RSA key check, where it has one."""
    import inspect

    from cryptography.hazmat.primitives import serialization

    name = "unsafe_skip_rsa_key_validation"
    return {name: True} if name in inspect.signature(serialization.load_pem_private_key).parameters else {}


def decrypt_password(password_enc: str, private_key_pem: bytes) -> bytes:
    """``PublicKeyTokenProvider::decryptPassword``: base64, then RSA-OAEP (SHA-1) with the
    token's private key, as ``openssl_private_decrypt(..., OPENSSL_PKCS1_OAEP_PADDING)``."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        encrypted = _php_base64_decode(password_enc)
    except (binascii.Error, ValueError):
        raise TokenDecryptError("stored password is not base64") from None
    try:
        # The PEM came out of an HMAC-checked ciphertext keyed with app password + secret,
        # i.e. Nextcloud made it: the slow RSA consistency check adds nothing here.
        # cryptography < 39 (Debian 12 has 38) always runs it and knows no such option.
        key = serialization.load_pem_private_key(private_key_pem, None, **_skip_rsa_check())
    except Exception:  # ValueError, TypeError (encrypted PEM), UnsupportedAlgorithm, ...
        raise TokenDecryptError("token private key is not a PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TokenDecryptError("token private key is not an RSA key")
    try:
        # OAEP with SHA-1 is what PHP's openssl_private_decrypt(..., OPENSSL_PKCS1_OAEP_PADDING) uses
        return key.decrypt(
            encrypted,
            padding.OAEP(
                mgf=padding.MGF1(hashes.SHA1()),  # noqa: S303
                algorithm=hashes.SHA1(),  # noqa: S303
                label=None,
            ),
        )
    except Exception:  # ValueError on any OAEP/length failure
        raise TokenDecryptError("stored password does not decrypt") from None


def stored_login_password(
    private_key_enc: str | bytes | None, password_enc: str | bytes | None, app_password: bytes, secret: str
) -> bytes | None:
    """The login password stored with an app-password token (``getPassword``), or None
    when the token stores none (``password`` NULL: Nextcloud's
    ``PasswordlessTokenException``, which ``checkTokenCredentials`` accepts).

    *app_password* is the token as the client sent it (the ``token`` column is the
    SHA-512 of it + secret); *secret* is config.php's ``secret``. Raises
    TokenDecryptError when Nextcloud would refuse the token or fail the request: a
    private key that does not decrypt, a non-NULL but empty or undecryptable
    ``password``, a password without private key. The caller must then verify the
    result against the user's current hash and refuse the token on a mismatch."""
    if password_enc is None:
        return None
    if isinstance(password_enc, bytes):
        password_enc = password_enc.decode("utf-8", "surrogateescape")
    if isinstance(private_key_enc, bytes):
        private_key_enc = private_key_enc.decode("utf-8", "surrogateescape")
    if not isinstance(private_key_enc, str) or not isinstance(password_enc, str):
        raise TokenDecryptError("token has a password but no private key")
    pem = decrypt_private_key(private_key_enc, app_password, secret)
    return decrypt_password(password_enc, pem)
