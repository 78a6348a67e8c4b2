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