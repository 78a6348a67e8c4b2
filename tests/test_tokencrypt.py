"""ncauth.tokencrypt: the login password stored with an app-password token, decrypted
exactly as Nextcloud's PublicKeyTokenProvider::getPassword does it.

Passwords are never compared inside an ``assert`` expression (pytest would print them on
failure): the comparison is made first and only its truth value is asserted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import nctokens

from ncauth import tokencrypt
from ncauth.tokencrypt import TokenDecryptError, crypto_decrypt, decrypt_private_key, stored_login_password

VECTORS = Path(__file__).parent / "vectors"
DOC = json.loads((VECTORS / "nextcloud_tokens.json").read_text())
CASES = {c["name"]: c for c in DOC["cases"]}
SECRET = DOC["secret"]
WITH_PW = CASES["with-password"]


def _stored(
    case: dict, *, app: str | None = None, secret: str | None = None, **columns: str | None
) -> bytes | None:
    cols = {**case["columns"], **columns}
    return stored_login_password(
        cols["private_key"],
        cols["password"],
        (case["app_password"] if app is None else app).encode(),
        case["secret"] if secret is None else secret,
    )


def _refused(case: dict, **kw) -> bool:
    try:
        _stored(case, **kw)
    except TokenDecryptError:
        return True
    return False


# --- Nextcloud's own Crypto vectors (tests/lib/Security/CryptoTest.php) --------------

NC_CRYPTO_VECTORS = [
    (
        "v1",
        "44a35023cca2e7a6125e06c29fc4b2ad9d8a33d0873a8b45b0de4ef9284f260c6c46bf25dc62120644c59b8bafe4281ddc47a70c35ae6c29ef7a63d79eefacc297e60b13042ac582733598d0a6b4de37311556bb5c480fd2633de4e6ebafa868c2d1e2d80a5d24f9660360dba4d6e0c8|lhrFgK0zd9U160Wo|a75e57ab701f9124e1113543fd1dc596f21e20d456a0d1e813d5a8aaec9adcb11213788e96598b67fe9486a9f0b99642c18296d0175db44b1ae426e4e91080ee",
        b"ThisIsAVeryS3cur3P4ssw0rd",
        b"Lorem ipsum dolor sit amet, consetetur sadipscing elitr, sed diam nonumy eirmod tempor invidunt.",
    ),
    (
        "v1-legacy",
        "e16599188e3d212f5c7f17fdc2abca46|M1WfLAxbcAmITeD6|509457885d6ca5e6c3bfd3741852687a7f2bffce197f8d5ae97b65818b15a1b7f616b68326ff312371540f4ca8ac55f8e2de4aa13aab3474bd3431e51214e3ee",
        b"mypass",
        b"legacy test",
    ),
    (
        "v2",
        "be006387f753e8728717e43cfc5526c37adf7b2c9b4a113ceec03b7b0bccfebee74e0acfa0015c5712b4376dacbd7bce26a8fbca916fdccee46203d8289f6b2e4c19318044d375edfc67c72e6c3ae329d4c276b8d866ac1b281844e81f7681fe83d90bc4b6fffa4f3cbc157d64257a493b67fd2af3c8976cb76df520f5739305|02e78ea7c73a32f3b407c54227a9d2ce|3e7a09628f818b7b1cd7724467f5b1b33135de6d2ec62d8c0361be4f2c5203385f10babdcae017d7b30abe5be2117803e3195fb6d9ef20949fe35dad5e9241ea|2",
        b"insecure-static-password",
        b"This is a plaintext value that will be encrypted with version 2. Which addresses the reduced permutations on the IV.",
    ),
    (
        "v3",
        "c99823461db746aa74f819c8640e9e3c367fa3bb9c21dff905b5dd14072c1d1b0da8b7e6b7307bf1561b6ba7aaa932a16c23b1fd5217dc019d55233ef0813c65fccaeabd6ea3a971ce1bbbdfda790ae00fb4442693cbb50072e02875b9f50591df74d00e96fd5b9bd13cb02a5f57b062ec98a4c64fc518ed325d097454883adbfc1687c2af995a392407c5e040a54afee4b2997ab158fe48ef67ccf721a6a7031fcb44d51170892ce7971021a7f3a00d19002eb9b007efe7aecf397ec0dc22064fb5d4a15ad83949f0804feca3c69cdd|8476f53c8d49a7e119798a70086d8911|ae3f7e23d469fbc791714ceb07d854624b1bbd39ac6a4edc05d552e10659adfdcada3a059fae737ffd7d842dd3fcc84bcc364cd298e814dd4967de4ad4a658eb|3",
        b"insecure-static-password",
        b"Another plaintext value that will be encrypted with version 3. It addresses the related key issue. Old ciphertexts should be decrypted properly, but only use the better version for encryption.",
    ),
]


@pytest.mark.parametrize(
    ("name", "ciphertext", "password", "plaintext"), NC_CRYPTO_VECTORS, ids=[v[0] for v in NC_CRYPTO_VECTORS]
)
def test_nextcloud_crypto_test_vectors(name: str, ciphertext: str, password: bytes, plaintext: bytes) -> None:
    assert crypto_decrypt(ciphertext, password) == plaintext
    with pytest.raises(TokenDecryptError, match="HMAC"):
        crypto_decrypt(ciphertext, password + b"x")


def test_nextcloud_wrong_iv_vector() -> None:
    # CryptoTest::testWrongIV and ::testWrongParameters
    with pytest.raises(TokenDecryptError, match="HMAC"):
        crypto_decrypt(
            "560f5436ba864b9f12f7f7ca6d41c327554a6f2c0a160a03316b202af07c65163274993f3a46e7547c07ba89304f00594a2f3bd99f83859097c58049c39d0d4ade10e0de914ff0604961e7c849d0271ed6c0b23f984ba16e7d033e3305fb0910e7b6a2a65c988d17dbee71d8f953684d|d2kdFUspVjC0o0sr|1a5feacf87eaa6869a6abdfba9a296e7bbad45b6ad89f7dce67cdc98e2da5dc4379cc672cc655e52bbf19599bf59482fbea13a73937697fa656bf10f3fc4f1aa",
            b"ThisIsAVeryS3cur3P4ssw0rd",
        )
    with pytest.raises(TokenDecryptError, match="decoded"):
        crypto_decrypt("1|2", b"ThisIsAVeryS3cur3P4ssw0rd")


# --- tokens made by PHP the way Nextcloud makes them ---------------------------------


def test_vectors_cover_the_cases() -> None:
    assert {c["outcome"] for c in CASES.values()} == {"password", "no-password", "error"}
    formats = {c["columns"]["private_key"].count("|") for c in CASES.values()}
    assert formats == {2, 3}  # three-field legacy and four-field (|2, |3)
    assert {c["columns"]["private_key"][-2:] for c in CASES.values()} >= {"|2", "|3"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_php_vectors(name: str) -> None:
    case = CASES[name]
    if case["outcome"] == "error":
        assert _refused(case)
        return
    got = _stored(case)
    if case["outcome"] == "no-password":
        assert got is None
        return
    same = got == case["login_password"].encode()
    assert same, f"{name}: decrypted password differs from the one PHP stored"


def test_wrong_app_password_or_secret() -> None:
    app = WITH_PW["app_password"]
    assert _refused(WITH_PW, app=app[:-1] + ("x" if app[-1] != "x" else "y"))
    assert _refused(WITH_PW, app=app.upper())
    assert _refused(WITH_PW, secret=SECRET + "x")
    assert _refused(WITH_PW, secret="")
    assert _refused(CASES["other-secret"], secret=CASES["other-secret"]["made_with_secret"][:-1])
    other = CASES["other-secret"]
    ok = _stored(other, secret=other["made_with_secret"]) == WITH_PW["login_password"].encode()
    assert ok, "the other-secret token decrypts under its own secret"


def test_empty_secret_fallback() -> None:
    """PublicKeyTokenProvider::decrypt retries with the bare token (secret once empty)."""
    case = CASES["made-without-secret"]
    for secret in (SECRET, "", "anything else"):
        ok = _stored(case, secret=secret) == case["login_password"].encode()
        assert ok, "a token made without secret decrypts whatever the secret is now"


def test_passwordless_token_never_touches_the_key() -> None:
    assert stored_login_password(None, None, b"whatever-app-password-x", SECRET) is None
    assert stored_login_password("garbage", None, b"whatever-app-password-x", SECRET) is None


def test_password_without_usable_key_or_empty_password_is_refused() -> None:
    # Nextcloud: decrypt(null) and decryptPassword('') end in a TypeError, i.e. a failed request.
    assert _refused(WITH_PW, private_key=None)
    assert _refused(WITH_PW, private_key="")
    assert _refused(WITH_PW, password="")
    # another token's password column does not decrypt with this token's key
    assert _refused(WITH_PW, password=CASES["unicode-password"]["columns"]["password"])
    # another token's private key: HMAC fails for this app password
    assert _refused(WITH_PW, private_key=CASES["unicode-password"]["columns"]["private_key"])


def _flip_hex(text: str, index: int) -> str:
    c = text[index]
    return text[:index] + ("0" if c != "0" else "1") + text[index + 1 :]


def test_tampered_private_key_fields() -> None:
    ct, iv, mac, version = WITH_PW["columns"]["private_key"].split("|")
    variants = {
        "ciphertext first": _flip_hex(ct, 0),
        "ciphertext last": _flip_hex(ct, len(ct) - 1),
        "iv": _flip_hex(iv, 5),
        "hmac": _flip_hex(mac, 17),
        "version 2": "2",
        "version 1": "1",
        "no version": None,
        "ciphertext truncated (odd)": ct[:-1],
        "ciphertext truncated (one block less)": ct[:-32],
        "iv truncated": iv[:-2],
        "hmac truncated": mac[:-2],
        "hmac empty": "",
        "ciphertext empty": "",
        "non-hex": "zz" + ct[2:],
    }
    for what, value in variants.items():
        fields = [ct, iv, mac, version]
        if what.startswith("ciphertext") or what == "non-hex":
            fields[0] = value
        elif what.startswith("iv"):
            fields[1] = value
        elif what.startswith("hmac"):
            fields[2] = value
        elif value is None:
            fields = fields[:3]
        else:
            fields[3] = value
        assert _refused(WITH_PW, private_key="|".join(fields)), what
    for extra in ("|", "|3", "|x|y"):
        assert _refused(WITH_PW, private_key=WITH_PW["columns"]["private_key"] + extra), extra


def test_tampered_password_column() -> None:
    enc = WITH_PW["columns"]["password"]
    raw = base64.b64decode(enc)
    for what, value in {
        "flipped byte": base64.b64encode(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:]).decode(),
        "truncated": base64.b64encode(raw[:-1]).decode(),
        "extended": base64.b64encode(raw + b"\0").decode(),
        "not base64": "!!!!",
        "garbage": "x" * 344,
    }.items():
        assert _refused(WITH_PW, password=value), what


@pytest.mark.parametrize(
    "private_key",
    [
        "",
        "|",
        "||",
        "|||",
        "||||",
        "a|b|c",
        "a|b|c|d|e",
        "00|00|00|3",
        "\u00e4|\u00e4|\u00e4",
        "\udcff|00|00",
        "\ud800|\ud800|\ud800|\ud800",
        "0" * 64 + "|" + "0" * 32 + "|" + "0" * 128 + "|3",
    ],
)
def test_garbage_private_key(private_key: str) -> None:
    with pytest.raises(TokenDecryptError):
        stored_login_password(private_key, "AAAA", b"some-app-password-long-enough", SECRET)
    with pytest.raises(TokenDecryptError):
        stored_login_password(private_key, "\ud800", b"some-app-password-long-enough", "\udfff")


def _v3_with_valid_hmac(ciphertext: bytes, iv: bytes, password: bytes) -> str:
    """A |3 field whose HMAC is right for *password* but whose ciphertext is arbitrary."""
    prk = hmac.new(b"\0" * 64, password, hashlib.sha512).digest()
    material = hmac.new(prk, b"\x01", hashlib.sha512).digest()
    mac_key = hashlib.sha512(material[32:] + b"a").hexdigest().encode()
    mac = hmac.new(mac_key, (ciphertext.hex() + iv.hex()).encode(), hashlib.sha512).hexdigest()
    return f"{ciphertext.hex()}|{iv.hex()}|{mac}|3"


def _TEXT(max_size: int) -> st.SearchStrategy[str]:
    """Any text, lone surrogates included (a DB driver's undecodable bytes)."""
    chars = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
    return st.lists(chars, max_size=max_size).map("".join)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    private_key=st.one_of(
        st.none(),
        _TEXT(300),
        st.lists(st.text(alphabet="0123456789abcdefABCDEF|x3", max_size=80), max_size=5).map("|".join),
    ),
    password=st.one_of(st.none(), _TEXT(400)),
    app=st.binary(max_size=80),
    secret=_TEXT(40),
)
def test_fuzz_random_columns(private_key: str | None, password: str | None, app: bytes, secret: str) -> None:
    try:
        result = stored_login_password(private_key, password, app, secret)
    except TokenDecryptError:
        return
    assert result is None or isinstance(result, bytes)


@FUZZ
@given(
    ciphertext=st.binary(min_size=1, max_size=200),
    iv=st.binary(min_size=16, max_size=16),
    password=st.one_of(st.none(), st.text(max_size=400)),
)
def test_fuzz_authentic_but_wrong_plaintext(ciphertext: bytes, iv: bytes, password: str | None) -> None:
    """Past the HMAC: bad padding, non-PEM plaintext, non-RSA or broken keys."""
    app = b"fuzz-app-password-0123456789"
    field = _v3_with_valid_hmac(ciphertext, iv, app + SECRET.encode())
    try:
        decrypt_private_key(field, app, SECRET)
    except TokenDecryptError:
        pass
    try:
        result = stored_login_password(field, password if password is not None else "AAAA", app, SECRET)
    except TokenDecryptError:
        return
    assert isinstance(result, bytes)


@FUZZ
@given(plaintext=st.binary(max_size=300), password=st.text(max_size=100))
def test_fuzz_authentic_plaintext_round_trip(plaintext: bytes, password: str) -> None:
    app = b"fuzz-app-password-0123456789"
    field = nctokens.nc_encrypt(plaintext, app + SECRET.encode())
    assert decrypt_private_key(field, app, SECRET) == plaintext
    with pytest.raises(TokenDecryptError):  # not a PEM key (or a key that cannot decrypt this)
        stored_login_password(field, password or "AAAA", app, SECRET)


def test_rsa_key_of_another_kind_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    app = b"ec-app-password-0123456789abc"
    with pytest.raises(TokenDecryptError, match="RSA"):
        stored_login_password(nctokens.nc_encrypt(pem, app + SECRET.encode()), "AAAA", app, SECRET)
    encrypted_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    with pytest.raises(TokenDecryptError):
        stored_login_password(nctokens.nc_encrypt(encrypted_pem, app + SECRET.encode()), "AAAA", app, SECRET)


# --- the Python token maker (tests/nctokens.py) ---------------------------------------


def _shape(columns: dict) -> dict:
    pub = columns["public_key"]
    return {
        "public_key": (
            pub.startswith("-----BEGIN PUBLIC KEY-----\n"),
            pub.endswith("-----END PUBLIC KEY-----\n"),
            max(map(len, pub.splitlines())),
        ),
        "private_key": bool(
            re.fullmatch(r"[0-9a-f]+\|[0-9a-f]{32}\|[0-9a-f]{128}\|3", columns["private_key"])
        ),
        "password": None
        if columns["password"] is None
        else (len(columns["password"]), bool(re.fullmatch(r"[A-Za-z0-9+/]+=*", columns["password"]))),
    }


def test_python_maker_decrypts_and_matches_php_format() -> None:
    app = "Pyth0-n-mak3-r-test-app-pw"
    cols = nctokens.token_columns(app, "py login password \u00e9", SECRET)
    ok = (
        stored_login_password(cols["private_key"], cols["password"], app.encode(), SECRET)
        == "py login password \u00e9".encode()
    )
    assert ok, "Python-made token columns decrypt"
    assert _shape(cols) == _shape(WITH_PW["columns"])
    php_pem = decrypt_private_key(WITH_PW["columns"]["private_key"], WITH_PW["app_password"].encode(), SECRET)
    py_pem = decrypt_private_key(cols["private_key"], app.encode(), SECRET)
    assert php_pem.split(b"\n")[0] == py_pem.split(b"\n")[0] == b"-----BEGIN PRIVATE KEY-----"
    assert (
        {len(line) for line in php_pem.splitlines()[1:-2]}
        == {len(line) for line in py_pem.splitlines()[1:-2]}
        == {64}
    )
    # the PHP ciphertext of a 2048-bit PKCS#8 PEM has the same size class as ours
    assert abs(len(cols["private_key"]) - len(WITH_PW["columns"]["private_key"])) <= 64


def test_python_maker_passwordless_and_secrets() -> None:
    app = "Pyth0-n-mak3-r-nopw-app-pw"
    cols = nctokens.token_columns(app, None, SECRET)
    assert cols["password"] is None
    assert stored_login_password(cols["private_key"], cols["password"], app.encode(), SECRET) is None
    cols = nctokens.token_columns(app, "pw", "a-different-secret")
    with pytest.raises(TokenDecryptError):
        stored_login_password(cols["private_key"], cols["password"], app.encode(), SECRET)
    ok = (
        stored_login_password(cols["private_key"], cols["password"], app.encode(), "a-different-secret")
        == b"pw"
    )
    assert ok


def test_python_maker_long_password_uses_4096_bits() -> None:
    app = "Pyth0-n-mak3-r-long-app-pw"
    long_pw = "L" * 251
    cols = nctokens.token_columns(app, long_pw, SECRET)
    assert len(base64.b64decode(cols["password"])) == 512
    ok = (
        stored_login_password(cols["private_key"], cols["password"], app.encode(), SECRET) == long_pw.encode()
    )
    assert ok


def test_import_is_cheap() -> None:
    """A per-login process that never decrypts a token does not import cryptography."""
    code = "import sys, ncauth.tokencrypt; sys.exit('cryptography' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- PHP itself (when installed) ------------------------------------------------------


def _php() -> str | None:
    php = shutil.which("php")
    if php is None and (os.environ.get("CI") or os.environ.get("NCAUTH_REQUIRE_PHP")):
        pytest.fail("php CLI missing: CI must install php-cli")
    return php


def _php_token(php: str, app: str, login_password: str | None, secret: str, fmt: str) -> dict:
    request = json.dumps(
        {"app_password": app, "login_password": login_password, "secret": secret, "format": fmt}
    )
    out = subprocess.run(
        [php, str(VECTORS / "make_token_vectors.php"), "--one"],
        input=request.encode(),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, "make_token_vectors.php --one failed"
    return json.loads(out.stdout)


def test_php_round_trip() -> None:
    """PHP encrypts a random password under a random app password and secret; Python decrypts."""
    php = _php()
    if php is None:
        pytest.skip("php CLI not installed")
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \u00e4\u00df\u20ac\U0001f511"
    for fmt in ("v3", "v2", "v1"):
        app = secrets.token_urlsafe(24)
        secret = secrets.token_hex(24)
        login = "".join(secrets.choice(alphabet) for _ in range(secrets.randbelow(60) + 1))
        cols = _php_token(php, app, login, secret, fmt)
        ok = (
            stored_login_password(cols["private_key"], cols["password"], app.encode(), secret)
            == login.encode()
        )
        assert ok, f"PHP-made token ({fmt}) does not decrypt in Python"
        assert cols["token"] == hashlib.sha512((app + secret).encode()).hexdigest()
        with pytest.raises(TokenDecryptError):
            stored_login_password(cols["private_key"], cols["password"], app.encode(), secret[:-1])


def test_php_comparison_and_base64_match_php() -> None:
    php = _php()
    if php is None:
        pytest.skip("php CLI not installed")
    versions = [
        "",
        "1",
        "2",
        "3",
        "10",
        "02",
        " 3",
        "3 ",
        "2.0",
        "1.9",
        "1e1",
        ".5",
        "x",
        "+3",
        "-3",
        "0x3",
        "2a",
        "a2",
        "\u00e4",
        "3\n",
        "\t2",
    ]
    code = 'foreach (json_decode(file_get_contents("php://stdin")) as $s) { echo ($s >= "2") ? "1" : "0"; }'
    out = subprocess.run(
        [php, "-r", code], input=json.dumps(versions).encode(), capture_output=True, timeout=60, check=True
    )
    assert out.stdout.decode() == "".join("1" if tokencrypt._php_at_least_2(v) else "0" for v in versions)

    samples = [
        "QUJD",
        "QUJ",
        "QU",
        "Q",
        "QU*JD",
        "Q U J D",
        "QUJD====",
        "=QUJD",
        "QU=JD",
        "",
        "!!!!",
        "QUJDRA",
        "QUJDRA==",
    ]
    code = (
        'foreach (json_decode(file_get_contents("php://stdin")) as $s) '
        '{ echo bin2hex(base64_decode($s)), "\\n"; }'
    )
    out = subprocess.run(
        [php, "-r", code], input=json.dumps(samples).encode(), capture_output=True, timeout=60, check=True
    )
    assert out.stdout.decode().splitlines() == [tokencrypt._php_base64_decode(s).hex() for s in samples]
