"""``ncauth demo``: three real decisions on a throwaway Nextcloud database, nothing else needed.

Why: the first command a newcomer runs should show ncauth doing its job before any
database, Dovecot or config exists. The demo makes a Nextcloud SQLite database in a
temporary directory (the tables as ``store`` reads them), stores one user's password the
way Nextcloud 19+ does (``3|`` + argon2id with Nextcloud's default parameters) and one app
password the way Nextcloud's Settings page makes it, then runs ``ncauth verify`` on it, the
very command (and decision path) an admin debugs real logins with, for a right password, a
wrong one and the app password. The passwords are random, handed over on stdin and never
shown; the directory is removed afterwards.

The token columns are made as ``PublicKeyTokenProvider::generateToken``
(lib/private/Authentication/Token/PublicKeyTokenProvider.php) stores a token made at login:
an RSA key pair, the PEM private key encrypted with ``Crypto::encrypt($pem, $appPassword .
$secret)`` (format ``|3``), and the login password RSA-OAEP(SHA-1)-encrypted with the public
key. This is written independently of ``ncauth.tokencrypt`` (encryption here, decryption
there); the tests check both against tokens PHP made (tests/test_tokencrypt.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, TextIO

__all__ = ["Credentials", "main", "nc_encrypt", "token_columns"]

#: ``ISecureRandom::CHAR_HUMAN_READABLE``, what app passwords are drawn from
_HUMAN_READABLE = "abcdefgijkmnopqrstwxyzABCDEFGHJKLMNPQRSTWXYZ23456789"
_UID = "alice"
_LOGIN = "alice@example.org"
#: ``ncauth verify``'s exit status for each outcome (sysexits.h, as in ncauth.cli)
_EXITS = {"OK": 0, "REFUSED": 77}
EX_SOFTWARE = 70
#: ``ncauth`` as a child process. Not ``python -m ncauth``: ``-m`` puts the working directory
#: first on sys.path, and the demo may be run (as root) where another user can plant an
#: ``ncauth`` package. ``-P`` leaves it out; this very ncauth's folder goes last, for a
#: source checkout that is not installed.
_NCAUTH = (
    sys.executable,
    "-P",
    "-c",
    "import sys; sys.path.append(sys.argv.pop(1)); from ncauth.cli import main; sys.exit(main())",
    str(Path(__file__).resolve().parent.parent),
)


class Credentials(NamedTuple):
    """The demo user's secrets: random unless a caller (a test) brings its own."""

    password: str
    app_password: str
    secret: str

    @classmethod
    def random(cls) -> Credentials:
        """A login password, an app password as ``AuthSettingsController::
        generateRandomDeviceToken`` makes it (five groups of five), and config.php's ``secret``."""
        app = "-".join("".join(secrets.choice(_HUMAN_READABLE) for _ in range(5)) for _ in range(5))
        return cls(secrets.token_urlsafe(18), app, secrets.token_urlsafe(36))


@functools.cache
def _shared_key(bits: int) -> object:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def nc_encrypt(plaintext: bytes, password: bytes, *, iv: bytes | None = None) -> str:
    """``OC\\Security\\Crypto::encrypt`` (Nextcloud ≥ 26, version 3): HKDF-SHA512 splits
    *password* into an AES key and an HMAC key; phpseclib's ``setPassword`` turns the AES
    key into AES-128 with PBKDF2-HMAC-SHA1 (salt ``phpseclib``, 1000 rounds)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import padding as sympadding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
    of a process unless *fresh_key* is set; ncauth never compares keys across tokens.
    ``password_hash`` (Nextcloud ≥ 25) is left out: only ``updatePasswords`` reads it."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    raw = None if login_password is None else login_password.encode()
    bits = 4096 if raw is not None and len(raw) > 250 else 2048
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits) if fresh_key else _shared_key(bits)
    assert isinstance(key, rsa.RSAPrivateKey)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    password = None
    if raw is not None:
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
        password = base64.b64encode(key.public_key().encrypt(raw, oaep)).decode()
    return {
        "public_key": public.decode(),
        "private_key": nc_encrypt(pem, (app_password + secret).encode()),
        "password": password,
    }


def _make_database(path: Path, cred: Credentials) -> None:
    """A Nextcloud database at *path* holding user ``alice`` and one app password of hers."""
    import sqlalchemy as sa
    from argon2 import PasswordHasher, Type

    from ncauth.config import Hashing
    from ncauth.store import Tables

    tables = Tables("oc_")
    nc = Hashing()  # Nextcloud's defaults: hashingMemoryCost 65536, hashingTimeCost 4, hashingThreads 1
    hasher = PasswordHasher(
        time_cost=nc.time_cost, memory_cost=nc.memory_cost, parallelism=nc.threads, type=Type.ID
    )
    columns = token_columns(cred.app_password, cred.password, cred.secret)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        tables.users.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                tables.users.insert().values(
                    uid=_UID, uid_lower=_UID, password="3|" + hasher.hash(cred.password)
                )
            )
            conn.execute(
                tables.authtoken.insert().values(
                    id=1,
                    uid=_UID,
                    login_name=_UID,
                    # PublicKeyTokenProvider::hashToken: sha512(token . secret)
                    token=hashlib.sha512((cred.app_password + cred.secret).encode()).hexdigest(),
                    type=1,  # IToken::PERMANENT_TOKEN, an app password
                    expires=None,
                    password_invalid=False,
                    version=2,  # PublicKeyToken::VERSION
                    password=columns["password"],
                    private_key=columns["private_key"],
                )
            )
    finally:
        engine.dispose()


def _write_config(path: Path, database: Path, secret: str) -> None:
    """The ncauth config for the demo database, mode 0600 (it holds the secret)."""
    text = (
        f'[nextcloud]\ndatabase_url = "sqlite:///{database}"\nsecret = "{secret}"\n\n'
        '[accounts]\ndomains = ["example.org"]\n\n'
        '[userdb]\nhome = "/var/vmail/{domain}/{local}"\n'
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _verify(config: Path, password: str, label: str, expected: str, out: TextIO) -> bool:
    """``ncauth verify`` on one login, its trace shown; whether the verdict is *expected*."""
    out.write(f"\n--- {label}: ncauth verify --config {config} --password-stdin {_LOGIN}\n")
    out.flush()
    proc = subprocess.run(
        [*_NCAUTH, "verify", "--config", str(config), "--password-stdin", _LOGIN],
        input=password.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    out.write(proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace"))
    good = proc.returncode == _EXITS[expected]
    out.write(
        f"=> exit {proc.returncode}: {'as expected' if good else 'NOT AS EXPECTED'} ({label} → {expected})\n"
    )
    return good


def run(out: TextIO, cred: Credentials | None = None) -> int:
    """Make the demo database, decide the three logins, remove it; 0 when all came out right."""
    cred = cred or Credentials.random()
    with tempfile.TemporaryDirectory(prefix="ncauth-demo-") as tmp:
        database, config = Path(tmp) / "nextcloud.db", Path(tmp) / "ncauth.toml"
        out.write(
            f"ncauth demo: a throwaway Nextcloud database ({database}) with user {_UID!r}, her password\n"
            "stored as Nextcloud stores it (3| argon2id, m=65536 t=4 p=1) and one app password of hers\n"
            "(oc_authtoken, as Nextcloud's Settings → Security makes it). Each login below is decided by\n"
            "`ncauth verify`, the decision Dovecot's logins get. Passwords are random and never shown.\n"
        )
        try:
            _make_database(database, cred)
        except Exception as exc:  # the demo's own set-up failed: say so in one line, no traceback
            out.write(f"ncauth demo: cannot make the demo database: {type(exc).__name__}\n")
            return EX_SOFTWARE
        _write_config(config, database, cred.secret)
        results = [
            _verify(config, cred.password, "right password", "OK", out),
            _verify(config, cred.password[::-1] + "x", "wrong password", "REFUSED", out),
            _verify(config, cred.app_password, "app password", "OK", out),
        ]
    good = sum(results)
    out.write(
        f"\nncauth demo: {good} of {len(results)} verdicts as expected; {tmp} removed.\n"
        + (
            "Next: README's \"Set up\" points ncauth at your Nextcloud database and Dovecot at ncauth.\n"
            if all(results)
            else "Something is wrong with this installation: see the traces above.\n"
        )
    )
    return 0 if all(results) else EX_SOFTWARE


def main() -> int:
    """``ncauth demo``."""
    return run(sys.stdout)
