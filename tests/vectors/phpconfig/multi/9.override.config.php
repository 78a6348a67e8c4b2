<?php
$CONFIG = array (
  'loglevel' => 9,
  'memcache.local' => '\\OC\\Memcache\\APCu',
  0 => 'nine',
);
