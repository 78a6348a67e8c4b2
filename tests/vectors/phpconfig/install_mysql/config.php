<?php
$CONFIG = array (
  'passwordsalt' => 'fAkE/sAlT+0123456789abcdefghij',
  'secret' => 'FaKeSeCrEt.0123456789/abcdefghijklmnopqrstuvwxyz+AB',
  'trusted_domains' => 
  array (
    0 => 'localhost',
    1 => 'cloud.example.org',
  ),
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
  'dbpassword' => 'fake\'pa\\ss$word',
  'installed' => true,
  'instanceid' => 'ocfake12345x',
  'memcache.local' => '\\OC\\Memcache\\APCu',
  'memcache.locking' => '\\OC\\Memcache\\Redis',
  'redis' => 
  array (
    'host' => '/run/redis/redis-server.sock',
    'port' => 0,
    'timeout' => 0.0,
  ),
  'maintenance' => false,
  'twofactor_enforced' => 'true',
  'twofactor_enforced_groups' => 
  array (
    0 => 'admin',
  ),
  'twofactor_enforced_excluded_groups' => 
  array (
  ),
  'hashingMemoryCost' => 32768,
  'hashingTimeCost' => 3,
  'hashingThreads' => 2,
  'loglevel' => 2,
  'default_phone_region' => 'DE',
);
