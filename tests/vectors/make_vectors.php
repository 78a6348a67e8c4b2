<?php
// Makes tests/vectors/nextcloud_hashes.json: password hashes stored exactly the way
// Nextcloud's lib/private/Security/Hasher.php stores them, and for each one the verdict
// that Nextcloud's Hasher::verify() gives for a list of candidate passwords.
//
//   php tests/vectors/make_vectors.php > tests/vectors/nextcloud_hashes.json
//
// The verdicts come from nc_verify() below, a line-by-line copy of the logic of
// Hasher::verify()/splitHash()/legacyHashVerify() (Nextcloud 31), so the Python tests
// compare ncauth against PHP itself, not against our reading of PHP.

const SALT = 'ncauth-test-passwordsalt-0123456789abcdef';

function nc_split(string $prefixed): ?array {
    $parts = explode('|', $prefixed, 2);
    if (count($parts) === 2 && (int)$parts[0] > 0) {
        return ['version' => (int)$parts[0], 'hash' => $parts[1]];
    }
    return null;
}

function nc_legacy(string $message, string $hash, string $salt): bool {
    $len = strlen($hash);
    if (($len === 60 && password_verify($message . $salt, $hash)) ||
        ($len === 40 && hash_equals($hash, sha1($message)))) {
        return true;
    }
    if (($len === 60 && password_verify($message, $hash)) ||
        ($len === 40 && hash_equals($hash, sha1($message)))) {
        return true;
    }
    return false;
}

function nc_verify(string $message, string $stored, string $salt): bool {
    $split = nc_split($stored);
    if ($split !== null) {
        return in_array($split['version'], [1, 2, 3], true) && password_verify($message, $split['hash']);
    }
    return nc_legacy($message, $stored, $salt);
}

$pw = 'correct horse battery staple';
$unicode = "p\u{e4}ssw\u{f6}rd \u{2713} \u{1F511}";
$long = str_repeat('L', 72) . 'tail-that-bcrypt-ignores';

$cases = [];
function add(array &$cases, string $name, string $stored, string $password, array $extra = []): void {
    $cases[] = ['name' => $name, 'stored' => $stored, 'password' => $password, 'candidates' => $extra];
}

add($cases, 'argon2id-nextcloud-default', '3|' . password_hash($pw, PASSWORD_ARGON2ID), $pw);
add($cases, 'argon2id-tuned', '3|' . password_hash($pw, PASSWORD_ARGON2ID,
    ['memory_cost' => 16384, 'time_cost' => 2, 'threads' => 2]), $pw);
add($cases, 'argon2i-seed-params', '2|' . password_hash($pw, PASSWORD_ARGON2I,
    ['memory_cost' => 32768, 'time_cost' => 4, 'threads' => 1]), $pw);
add($cases, 'argon2i-php72-defaults', '2|' . password_hash($pw, PASSWORD_ARGON2I,
    ['memory_cost' => 1024, 'time_cost' => 2, 'threads' => 2]), $pw);
add($cases, 'bcrypt-cost10', '1|' . password_hash($pw, PASSWORD_BCRYPT, ['cost' => 10]), $pw);
add($cases, 'bcrypt-long-password', '1|' . password_hash($long, PASSWORD_BCRYPT, ['cost' => 10]), $long,
    [str_repeat('L', 72), str_repeat('L', 72) . 'another tail', str_repeat('L', 71)]);
add($cases, 'argon2id-unicode', '3|' . password_hash($unicode, PASSWORD_ARGON2ID,
    ['memory_cost' => 8192, 'time_cost' => 1, 'threads' => 1]), $unicode,
    ["P\u{c4}SSW\u{d6}RD \u{2713} \u{1F511}", "passwort"]);
// The digit does not decide: password_verify() follows the inner identifier.
add($cases, 'digit-1-inner-argon2id', '1|' . password_hash($pw, PASSWORD_ARGON2ID,
    ['memory_cost' => 8192, 'time_cost' => 1, 'threads' => 1]), $pw);
add($cases, 'digit-3-inner-bcrypt', '3|' . password_hash($pw, PASSWORD_BCRYPT, ['cost' => 4]), $pw);
add($cases, 'leading-zero-version', '03|' . password_hash($pw, PASSWORD_ARGON2ID,
    ['memory_cost' => 8192, 'time_cost' => 1, 'threads' => 1]), $pw);
add($cases, 'unknown-version-4', '4|' . password_hash($pw, PASSWORD_ARGON2ID,
    ['memory_cost' => 8192, 'time_cost' => 1, 'threads' => 1]), $pw);
add($cases, 'legacy-sha1', sha1($pw), $pw, [strtoupper($pw), sha1($pw)]);
add($cases, 'legacy-sha1-uppercase-hex', strtoupper(sha1($pw)), $pw);
add($cases, 'legacy-bcrypt-salted', password_hash($pw . SALT, PASSWORD_BCRYPT, ['cost' => 4]), $pw,
    [$pw . SALT]);
add($cases, 'legacy-bcrypt-unsalted', password_hash($pw, PASSWORD_BCRYPT, ['cost' => 4]), $pw);
add($cases, 'legacy-bcrypt-2a', str_replace('$2y$', '$2a$', password_hash($pw, PASSWORD_BCRYPT, ['cost' => 4])), $pw);
add($cases, 'garbage', 'not a hash at all', $pw, ['not a hash at all']);
add($cases, 'empty-hash', '', $pw, ['']);
add($cases, 'bare-prefix', '3|', $pw, ['']);

$out = [
    'made_by' => 'php ' . PHP_VERSION . ' tests/vectors/make_vectors.php',
    'passwordsalt' => SALT,
    'cases' => [],
];
foreach ($cases as $c) {
    $candidates = array_values(array_unique(array_merge([$c['password'], 'wrong password', ''], $c['candidates'])));
    $verdicts = [];
    foreach ($candidates as $cand) {
        $verdicts[] = ['password_hex' => bin2hex($cand), 'accepted' => nc_verify($cand, $c['stored'], SALT)];
    }
    $out['cases'][] = ['name' => $c['name'], 'stored' => $c['stored'], 'verdicts' => $verdicts];
}
echo json_encode($out, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
