<?php
$CONFIG = null;
