"""The ``ncauth-checkpassword`` entry point, outside the ``ncauth`` package on purpose.

Dovecot takes checkpassword's exit status 1 for "wrong password" and Python exits 1 on
any uncaught exception, including one raised while importing. A console script that
imported ``ncauth.checkpassword`` directly would therefore report a half-upgraded,
unreadable or shadowed package as a wrong password, and mail clients would drop the
saved password. This module imports nothing but the standard library before it has a
handler in place: whatever goes wrong is exit 111, "temporary failure".
"""

import os
import sys


def main() -> int:
    try:
        from ncauth.checkpassword import main as checkpassword
    except BaseException as exc:
        try:
            sys.stderr.write(
                f"ncauth: cannot load ncauth.checkpassword, temporary failure: {type(exc).__name__}: {exc}\n"
            )
            sys.stderr.flush()
        finally:
            os._exit(111)
    return checkpassword()
