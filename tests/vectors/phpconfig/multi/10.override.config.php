<?php
$CONFIG = array (
  'loglevel' => 10,
  'trusted_domains' => 
  array (
    3 => 'ten.example',
  ),
  7 => 'ten',
);
