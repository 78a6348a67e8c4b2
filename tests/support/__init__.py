"""What the tests share, so that test modules never import each other (and bench/ can
use the same helpers without importing a test module):

* ``population``, ``ncschema``, ``nctokens``: the standard users, Nextcloud's tables and
  its token encryption, rebuilt from Nextcloud's source;
* ``dbservers``: throwaway MariaDB and PostgreSQL servers; ``nextcloud``: a database
  holding Nextcloud's tables (``NextcloudDB``);
* ``checkpassword``: the installed checkpassword program run as Dovecot 2.3 runs it;
* ``daemon``: ``ncauth serve`` as a real process, and raw socket access to it;
* ``dovecot_harness``, ``dovecot24``, ``dovecot_e2e``: real Dovecot 2.3 and 2.4 instances
  and the generated snippets wired into them;
* ``debchroot``: clean Debian 12 and 13 chroots, cached, used through overlays; ``debpkg``: the
  project's .deb; ``unit_launcher``: the installed systemd units started as systemd would;
  ``decide_cases``: the standard cases decided by another Python (other library versions);
* ``postfix_harness``: a private Postfix, an LMTP sink and a socketmap server;
* ``leakcheck``: the pytest plugin that fails a test whose output holds a secret;
* ``require``: skip locally, fail in CI, when a real component is missing.

Fixtures live in ``tests/conftest.py``.
"""

import pkgutil

import pytest

# Helpers assert too (a daemon's exit code, a wait that timed out): let pytest rewrite
# their asserts, as it does for test modules, so a failure shows the values.
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))
