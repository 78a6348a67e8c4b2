"""Token columns made the way Nextcloud makes them, in Python, so tests need no PHP.

``token_columns`` returns the ``public_key``, ``private_key`` and ``password`` values that
``PublicKeyTokenProvider::newToken`` stores for an app password; ``nc_encrypt`` is
``Crypto::encrypt``. Both live in ``ncauth.demo``, which makes the demo's app password with
them; they are written independently of ``ncauth.tokencrypt`` (encryption there, decryption
in tokencrypt), and the PHP vectors check both (tests/test_tokencrypt.py). Pass the result to
``ncschema.add_app_token(..., **token_columns(...))``.
"""

from __future__ import annotations

from ncauth.demo import nc_encrypt, token_columns

__all__ = ["nc_encrypt", "token_columns"]
