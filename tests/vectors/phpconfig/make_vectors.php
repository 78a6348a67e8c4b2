<?php
// Makes the config.php vectors in this folder the way Nextcloud writes them
// (lib/private/Config.php::writeData: "<?php\n\$CONFIG = " . var_export($cache, true) . ";\n"),
// plus, for every case folder, expected.json: what Nextcloud's Config::readData() makes of
// the folder (include config.php, then glob('*.config.php') in natsort order, array_merge),
// computed by PHP itself. Hand-edited files (hand_edited/*.php) are written verbatim below.
// All secrets here are fake.
//
//   php tests/vectors/phpconfig/make_vectors.php
//
// Only run this on the files it writes itself: it includes them.

$here = __DIR__;

function write_config(string $path, array $cache): void {
    file_put_contents($path, "<?php\n" . '$CONFIG = ' . var_export($cache, true) . ";\n");
}

function read_data(string $configDir, string $fileName = 'config.php'): array {
    // Config::readData, minus locking and opcache.
    $cache = [];
    $configFiles = [$configDir . $fileName];
    $extra = glob($configDir . '*.' . $fileName);
    if (is_array($extra)) {
        natsort($extra);
        $configFiles = array_merge($configFiles, $extra);
    }
    foreach ($configFiles as $file) {
        unset($CONFIG);
        include $file;
        if (isset($CONFIG) && is_array($CONFIG)) {
            $cache = array_merge($cache, $CONFIG);
        }
    }
    return $cache;
}

function expected(string $dir): void {
    $json = json_encode(read_data($dir . '/'), JSON_PRETTY_PRINT | JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    file_put_contents($dir . '/expected.json', $json . "\n");
}

// 1. What `occ maintenance:install --database mysql ...` writes (Nextcloud 29), after
//    `occ config:system:set memcache.local --value '\OC\Memcache\APCu'` (a string),
//    `occ config:system:set redis host --value /run/redis/redis-server.sock`,
//    `occ config:system:set redis port --value 0 --type integer`,
//    and `occ twofactorauth:enforce --on --group admin` (older Nextcloud: the string 'true').
@mkdir("$here/install_mysql");
write_config("$here/install_mysql/config.php", [
    'passwordsalt' => 'fAkE/sAlT+0123456789abcdefghij',
    'secret' => 'FaKeSeCrEt.0123456789/abcdefghijklmnopqrstuvwxyz+AB',
    'trusted_domains' => [0 => 'localhost', 1 => 'cloud.example.org'],
    'datadirectory' => '/var/www/nextcloud/data',
    'dbtype' => 'mysql',
    'version' => '29.0.4.1',
    'overwrite.cli.url' => 'https://cloud.example.org',
    'dbname' => 'nextcloud',
    'dbhost' => 'localhost:/run/mysqld/mysqld.sock',
    'dbport' => '',
    'dbtableprefix' => 'oc_',
    'mysql.utf8mb4' => true,
    'dbuser' => 'nextcloud',
    'dbpassword' => "fake'pa\\ss\$word",
    'installed' => true,
    'instanceid' => 'ocfake12345x',
    'memcache.local' => '\\OC\\Memcache\\APCu',
    'memcache.locking' => '\\OC\\Memcache\\Redis',
    'redis' => ['host' => '/run/redis/redis-server.sock', 'port' => 0, 'timeout' => 0.0],
    'maintenance' => false,
    'twofactor_enforced' => 'true',
    'twofactor_enforced_groups' => [0 => 'admin'],
    'twofactor_enforced_excluded_groups' => [],
    'hashingMemoryCost' => 32768,
    'hashingTimeCost' => 3,
    'hashingThreads' => 2,
    'loglevel' => 2,
    'default_phone_region' => 'DE',
]);
expected("$here/install_mysql");

// 2. PostgreSQL on an IPv6 address with a port, newest-occ booleans, an unusual prefix.
@mkdir("$here/install_pgsql");
write_config("$here/install_pgsql/config.php", [
    'instanceid' => 'ocpgsql00001',
    'passwordsalt' => 'pgFakeSalt',
    'secret' => 'pgFakeSecret',
    'trusted_domains' => [0 => 'nc.example.net'],
    'datadirectory' => '/srv/nextcloud-data',
    'dbtype' => 'pgsql',
    'version' => '31.0.0.18',
    'dbname' => 'nc',
    'dbhost' => '[::1]:5433',
    'dbport' => '',
    'dbtableprefix' => 'nc_',
    'dbuser' => 'oc_admin',
    'dbpassword' => 'fakepgpw',
    'installed' => true,
    'twofactor_enforced' => true,
    'token_auth_enforced' => 'false',
    'allow_user_to_change_display_name' => false,
]);
expected("$here/install_pgsql");

// 3. A folder with extra *.config.php files: natsort order (9 before 10), a dot-file
//    glob skips, a file without $CONFIG, integer keys renumbered by array_merge.
@mkdir("$here/multi");
foreach (glob("$here/multi/*.php") ?: [] as $old) { unlink($old); }
foreach (glob("$here/multi/.*.php") ?: [] as $old) { unlink($old); }
write_config("$here/multi/config.php", [
    'dbtype' => 'sqlite3', 'datadirectory' => '/var/lib/nextcloud', 'dbname' => 'owncloud',
    'trusted_domains' => [0 => 'a.example'], 5 => 'int key in config.php', 'loglevel' => 0,
]);
write_config("$here/multi/10.override.config.php", ['loglevel' => 10, 'trusted_domains' => [3 => 'ten.example'], 7 => 'ten']);
write_config("$here/multi/9.override.config.php", ['loglevel' => 9, 'memcache.local' => '\\OC\\Memcache\\APCu', 0 => 'nine']);
write_config("$here/multi/.hidden.config.php", ['loglevel' => 'hidden files are not globbed']);
file_put_contents("$here/multi/nocfg.config.php", "<?php\n// no \$CONFIG here: Nextcloud skips this file\n");
file_put_contents("$here/multi/null.config.php", "<?php\n\$CONFIG = null;\n");
write_config("$here/multi/redis.config.php", ['memcache.locking' => '\\OC\\Memcache\\Redis', 'redis' => ['host' => 'localhost', 'port' => 6379]]);
expected("$here/multi");

// 4. Hand-edited by an admin: comments, short arrays, double quotes, odd literals, a closing tag.
@mkdir("$here/hand_edited");
file_put_contents("$here/hand_edited/config.php", <<<'PHP'
<?PHP
/**
 * Edited by hand. Careful!
 */
# shell-style comment
$CONFIG = [
  // database
  'dbtype' => "mysql",
  'dbhost' => "db.internal:3307",     // port in dbhost, as Nextcloud wants it
  "dbname" => 'next' /* inline */ ,
  'dbuser' => "nc\x75ser",
  'dbpassword' => "tab\there\\back\$dollar\"quote\101\u{e9}",
  'dbtableprefix' => 'oc_',
  'hashingMemoryCost' => 0x10000,
  'hashingTimeCost' => 0b11,
  'hashingThreads' => 0o1,
  'some_octal' => 0755,
  'big' => 1_000_000,
  'neg' => - 42,
  'float' => 1.5e3,
  'huge' => 9223372036854775808,
  'twofactor_enforced' => TRUE,
  'twofactor_enforced_groups' => ['admins', 'staff',],
  'twofactor_enforced_excluded_groups' => array(),
  'token_auth_enforced' => Null,
  '10' => 'numeric string key',
  '010' => 'non-canonical key',
  true => 'bool key',
  'list' => ['a', 5 => 'b', 'c', '7' => 'd', 'e'],
  'empty_string' => '',
];
$CONFIG['secret'] = 'handSecret';
$CONFIG['redis']['host'] = '/run/redis.sock';
?>
PHP);
expected("$here/hand_edited");
