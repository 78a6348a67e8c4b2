<?php
// no $CONFIG here: Nextcloud skips this file
