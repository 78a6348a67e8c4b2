<?php
$CONFIG = array (
  'loglevel' => 'hidden files are not globbed',
);
