<?php
$CONFIG = array (
  'dbtype' => 'sqlite3',
  'datadirectory' => '/var/lib/nextcloud',
  'dbname' => 'owncloud',
  'trusted_domains' => 
  array (
    0 => 'a.example',
  ),
  5 => 'int key in config.php',
  'loglevel' => 0,
);
