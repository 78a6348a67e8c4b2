"""Token columns made the way Nextcloud makes them, in Python, so tests need no PHP.

``token_columns`` returns the ``public_key``, ``private_key`` and ``password`` values that
``PublicKeyTokenProvider::newToken`` (lib/private/Authentication/Token/
PublicKeyTokenProvider.php) stores for an app password: an RSA key pair, the PEM private
key encrypted with ``Crypto::encrypt($pem, $appPassword . $secret)`` (format ``|3``), and
the login password RSA-OAEP(SHA-1)-encrypted with the public key, base64-encoded.

Written independently of ``ncauth.tokencrypt`` (encryption here, decryption there); the
PHP vectors check both (tests/test_tokencrypt.py). Pass the result to
``ncschema.add_app_token(..., **token_columns(...))``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sympadding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["nc_encrypt", "token_columns"]


@functools.cache
def _shared_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def nc_encrypt(plaintext: bytes, password: bytes, *, iv: bytes | None = None) -> str:
    """``OC\\Security\\Crypto::encrypt`` (Nextcloud ≥ 26, version 3): HKDF-SHA512 splits
    *password* into an AES key and an HMAC key; phpseclib's ``setPassword`` turns the AES
    key into AES-128 with PBKDF2-HMAC-SHA1 (salt ``phpseclib``, 1000 rounds)."""
    material = HKDF(algorithm=hashes.SHA512(), length=64, salt=None, info=b"").derive(password)
    key = hashlib.pbkdf2_hmac("sha1", material[:32], b"phpseclib", 1000, 16)
    iv = os.urandom(16) if iv is None else iv
    padder = sympadding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = (encryptor.update(padded) + encryptor.finalize()).hex()
    mac_key = hashlib.sha512(material[32:] + b"a").hexdigest().encode()
    mac = hmac.new(mac_key, (ciphertext + iv.hex()).encode(), hashlib.sha512).hexdigest()
    return f"{ciphertext}|{iv.hex()}|{mac}|3"


def token_columns(
    app_password: str, login_password: str | None, secret: str, *, fresh_key: bool = False
) -> dict[str, str | None]:
    """``public_key``, ``private_key`` and ``password`` as Nextcloud stores them for a
    token made from *app_password* under config.php's *secret*; ``password`` is None
    (NULL) when *login_password* is None.

    The RSA key is 2048 bits (4096 when the password exceeds 250 bytes, as in
    ``newToken``). Key generation is slow, so one key per size is shared by all tokens
    of the test run unless *fresh_key* is set; ncauth never compares keys across tokens.
    ``password_hash`` (Nextcloud ≥ 25) is left out: only ``updatePasswords`` reads it."""
    raw = None if login_password is None else login_password.encode()
    bits = 4096 if raw is not None and len(raw) > 250 else 2048
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits) if fresh_key else _shared_key(bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    password = None
    if raw is not None:
        encrypted = key.public_key().encrypt(
            raw, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        )
        password = base64.b64encode(encrypted).decode()
    return {
        "public_key": public.decode(),
        "private_key": nc_encrypt(pem, (app_password + secret).encode()),
        "password": password,
    }
