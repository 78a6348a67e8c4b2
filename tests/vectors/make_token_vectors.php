<?php
// Makes tests/vectors/nextcloud_tokens.json: oc_authtoken rows whose public_key,
// private_key, password (and password_hash) columns are stored the way Nextcloud 32 stores
// them, with the app password, the secret and the login password they hold.
//
//   php tests/vectors/make_token_vectors.php > tests/vectors/nextcloud_tokens.json
//   php tests/vectors/make_token_vectors.php --one < request.json   (one token, for tests)
//
// nc_new_token() follows PublicKeyTokenProvider::newToken()/encrypt()/encryptPassword()/
// hashPassword() (lib/private/Authentication/Token/PublicKeyTokenProvider.php), and
// nc_encrypt() follows OC\Security\Crypto::encrypt() (lib/private/Security/Crypto.php),
// which uses phpseclib 2's AES: setPassword($key) derives the AES key with
// hash_pbkdf2('sha1', $key, 'phpseclib', 1000, 16) (Crypt\Base::setPassword defaults,
// Crypt\Rijndael::$password_default_salt = 'phpseclib', $key_length = 16), so AES-128-CBC,
// PKCS#7-padded by phpseclib's _pad(). openssl_encrypt('aes-128-cbc', OPENSSL_RAW_DATA)
// pads the same way, so it yields the same bytes as phpseclib (which itself calls
// openssl_encrypt with OPENSSL_ZERO_PADDING after padding). nc_decrypt() is a copy of
// Crypto::decryptWithoutSecret() and checks every token before it is written;
// nc_encrypt_v2()/nc_encrypt_v1() write the older formats that tokens made by
// Nextcloud < 26 (|2) and < 21 (three fields, raw IV) still carry.
//
// Nothing here prints a password except into the JSON document itself.

const MAIN_SECRET = 'ncauth-token-vectors-secret-7f3c9a1e5b2d8046aa91c3e7d2f0b6';
const OTHER_SECRET = 'ncauth-token-vectors-OTHER-secret-0d9e8c7b6a5f4e3d2c1b0a99';

function nc_hmac(string $message, string $password): string {
    // Crypto::calculateHMAC: phpseclib Hash('sha512') keyed with hash('sha512', $password . 'a')
    return hash_hmac('sha512', $message, hash('sha512', $password . 'a'), true);
}

function aes_key(string $password): string {
    return hash_pbkdf2('sha1', $password, 'phpseclib', 1000, 16, true);
}

function aes_cbc(string $plaintext, string $password, string $iv): string {
    $out = openssl_encrypt($plaintext, 'aes-128-cbc', aes_key($password), OPENSSL_RAW_DATA, $iv);
    if ($out === false) {
        throw new RuntimeException('openssl_encrypt failed');
    }
    return $out;
}

function nc_encrypt(string $plaintext, string $password): string {
    $keyMaterial = hash_hkdf('sha512', $password);
    $iv = random_bytes(16);
    $ciphertext = bin2hex(aes_cbc($plaintext, substr($keyMaterial, 0, 32), $iv));
    $iv = bin2hex($iv);
    $hmac = bin2hex(nc_hmac($ciphertext . $iv, substr($keyMaterial, 32)));
    return $ciphertext . '|' . $iv . '|' . $hmac . '|3';
}

function nc_encrypt_v2(string $plaintext, string $password): string {
    $iv = random_bytes(16);
    $ciphertext = bin2hex(aes_cbc($plaintext, $password, $iv));
    $iv = bin2hex($iv);
    return $ciphertext . '|' . $iv . '|' . bin2hex(nc_hmac($ciphertext . $iv, $password)) . '|2';
}

function nc_encrypt_v1(string $plaintext, string $password): string {
    // ISecureRandom::generate(16): 16 characters used as the raw IV
    $chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    $iv = '';
    for ($i = 0; $i < 16; $i++) {
        $iv .= $chars[random_int(0, 63)];
    }
    $ciphertext = bin2hex(aes_cbc($plaintext, $password, $iv));
    return $ciphertext . '|' . $iv . '|' . bin2hex(nc_hmac($ciphertext . $iv, $password));
}

function nc_hex2bin(string $hex): string {
    if (!ctype_xdigit($hex) || strlen($hex) % 2 !== 0) {
        throw new RuntimeException('not hex');
    }
    return hex2bin($hex);
}

function nc_decrypt(string $authenticatedCiphertext, string $password): string {
    $hmacKey = $encryptionKey = $password;
    $parts = explode('|', $authenticatedCiphertext);
    $partCount = count($parts);
    if ($partCount < 3 || $partCount > 4) {
        throw new Exception('Authenticated ciphertext could not be decoded.');
    }
    $ciphertext = nc_hex2bin($parts[0]);
    $iv = $parts[1];
    $hmac = nc_hex2bin($parts[2]);
    if ($partCount === 4) {
        $version = $parts[3];
        if ($version >= '2') {
            $iv = nc_hex2bin($iv);
        }
        if ($version === '3') {
            $keyMaterial = hash_hkdf('sha512', $password);
            $encryptionKey = substr($keyMaterial, 0, 32);
            $hmacKey = substr($keyMaterial, 32);
        }
    }
    if (!hash_equals(nc_hmac($parts[0] . $parts[1], $hmacKey), $hmac)) {
        throw new Exception('HMAC does not match.');
    }
    $iv = str_pad(substr($iv, 0, 16), 16, "\0");
    $result = openssl_decrypt($ciphertext, 'aes-128-cbc', aes_key($encryptionKey), OPENSSL_RAW_DATA, $iv);
    if ($result === false) {
        throw new Exception('Decryption failed');
    }
    return $result;
}

/** @return array<string, ?string> the columns newToken() sets, plus what the test needs */
function nc_new_token(string $appPassword, ?string $password, string $secret, string $format = 'v3',
                      bool $withHash = true): array {
    $config = [
        'digest_alg' => 'sha512',
        'private_key_bits' => $password !== null && strlen($password) > 250 ? 4096 : 2048,
    ];
    $res = openssl_pkey_new($config);
    if ($res === false || openssl_pkey_export($res, $privateKey, null, $config) === false) {
        throw new RuntimeException('OpenSSL reported a problem');
    }
    $publicKey = openssl_pkey_get_details($res)['key'];
    $encrypt = ['v3' => 'nc_encrypt', 'v2' => 'nc_encrypt_v2', 'v1' => 'nc_encrypt_v1'][$format];
    $columns = [
        'public_key' => $publicKey,
        'private_key' => $encrypt($privateKey, $appPassword . $secret),
        'password' => null,
        'password_hash' => null,
        'token' => hash('sha512', $appPassword . $secret),
    ];
    if ($password !== null) {
        if (!openssl_public_encrypt($password, $encrypted, $publicKey, OPENSSL_PKCS1_OAEP_PADDING)) {
            throw new RuntimeException('openssl_public_encrypt failed');
        }
        $columns['password'] = base64_encode($encrypted);
        if ($withHash) {
            // hashPassword(): Hasher::hash(sha1($password) . $password), argon2id defaults
            $columns['password_hash'] = '3|' . password_hash(sha1($password) . $password, PASSWORD_ARGON2ID);
        }
    }
    // Self-check with the copy of Crypto::decryptWithoutSecret and decryptPassword().
    $pem = nc_decrypt($columns['private_key'], $appPassword . $secret);
    if ($pem !== $privateKey) {
        throw new RuntimeException('private key does not round-trip');
    }
    if ($password !== null) {
        openssl_private_decrypt(base64_decode($columns['password']), $back, $pem, OPENSSL_PKCS1_OAEP_PADDING);
        if ($back !== $password) {
            throw new RuntimeException('password does not round-trip');
        }
    }
    return $columns;
}

function app_password(): string {
    // AuthSettingsController::generateRandomDeviceToken: 5 groups of 5 of ISecureRandom's
    // upper+lower+digits, without look-alike characters
    $chars = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
    $groups = [];
    for ($g = 0; $g < 5; $g++) {
        $s = '';
        for ($i = 0; $i < 5; $i++) {
            $s .= $chars[random_int(0, strlen($chars) - 1)];
        }
        $groups[] = $s;
    }
    return implode('-', $groups);
}

if (in_array('--one', $argv, true)) {
    // {"app_password": ..., "login_password": ... or null, "secret": ..., "format": "v3"}
    $req = json_decode(stream_get_contents(STDIN), true, 8, JSON_THROW_ON_ERROR);
    echo json_encode(nc_new_token($req['app_password'], $req['login_password'], $req['secret'],
        $req['format'] ?? 'v3', false), JSON_THROW_ON_ERROR), "\n";
    exit(0);
}

$cases = [];
function add(array &$cases, string $name, string $note, ?string $password, string $madeWith,
             string $secret, string $outcome, string $format = 'v3', ?string $app = null): void {
    $app ??= app_password();
    $cases[] = [
        'name' => $name,
        'note' => $note,
        'app_password' => $app,
        'made_with_secret' => $madeWith,
        'secret' => $secret,
        'outcome' => $outcome,
        'login_password' => $outcome === 'password' ? $password : null,
        'columns' => nc_new_token($app, $password, $madeWith, $format),
    ];
}

$pw = 'correct horse battery staple';
add($cases, 'with-password', 'app password made by a login with a password', $pw,
    MAIN_SECRET, MAIN_SECRET, 'password');
add($cases, 'no-password', 'password column NULL (token made without a password): getPassword throws PasswordlessTokenException',
    null, MAIN_SECRET, MAIN_SECRET, 'no-password');
add($cases, 'other-secret', 'made under another secret: HMAC fails with ours and with the bare token',
    $pw, OTHER_SECRET, MAIN_SECRET, 'error');
add($cases, 'made-without-secret', 'made while secret was empty: decrypt() falls back to the bare token',
    $pw, '', MAIN_SECRET, 'password');
add($cases, 'unicode-password', 'multi-byte login password', "p\u{e4}ssw\u{f6}rd \u{2713} \u{1F511}",
    MAIN_SECRET, MAIN_SECRET, 'password');
add($cases, 'empty-login-password', 'an empty string was encrypted (not NULL)', '',
    MAIN_SECRET, MAIN_SECRET, 'password');
add($cases, 'long-password-4096', 'password longer than 250 bytes: 4096-bit key', str_repeat('Lp0-', 70),
    MAIN_SECRET, MAIN_SECRET, 'password');
add($cases, 'legacy-v2-private-key', 'private key in Crypto format |2 (Nextcloud 21..25)', $pw,
    MAIN_SECRET, MAIN_SECRET, 'password', 'v2');
add($cases, 'legacy-v1-private-key', 'private key in the three-field Crypto format (Nextcloud < 21)', $pw,
    MAIN_SECRET, MAIN_SECRET, 'password', 'v1');
add($cases, 'long-app-password', 'a 72-character token (ClientFlowLoginController::generateAppPassword)',
    'seventy-two character token, short password', MAIN_SECRET, MAIN_SECRET, 'password', 'v3',
    substr(str_repeat('AbCdEfGhIjKlMnOpQrStUvWxYz0123456789', 2), 0, 72));

echo json_encode([
    'made_by' => 'php ' . PHP_VERSION . ' tests/vectors/make_token_vectors.php',
    'openssl' => OPENSSL_VERSION_TEXT,
    'secret' => MAIN_SECRET,
    'cases' => $cases,
], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR), "\n";
