"""Decide logins with whatever ncauth the running interpreter imports, and print the verdicts.

Run by another Python than the test's (a venv with other library versions, a chroot's
/usr/bin/python3): stdlib and ncauth only. Reads ``{"config": path, "cases": [{"id", "login",
"password", "remote_ip"}]}`` as JSON on stdin; writes one JSON object a case
(``id``, ``outcome``, ``reason``, ``user``) and, first, the library versions it ran with. No
password is ever written out.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata


def main() -> int:
    from ncauth import config, policy

    request = json.load(sys.stdin)
    libs = ("SQLAlchemy", "argon2-cffi", "bcrypt", "PyNaCl", "PyMySQL", "cryptography")
    print(json.dumps({"versions": {name: metadata.version(name) for name in libs}}))
    auth = policy.Authenticator(config.load(request["config"]))
    try:
        for case in request["cases"]:
            verdict = auth.authenticate(case["login"], case["password"].encode(), remote_ip=case["remote_ip"])
            print(
                json.dumps(
                    {
                        "id": case["id"],
                        "outcome": verdict.outcome.value,
                        "reason": verdict.reason,
                        "user": verdict.user,
                    }
                )
            )
    finally:
        auth.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
