<?php
$CONFIG = array (
  'instanceid' => 'ocpgsql00001',
  'passwordsalt' => 'pgFakeSalt',
  'secret' => 'pgFakeSecret',
  'trusted_domains' => 
  array (
    0 => 'nc.example.net',
  ),
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
);
