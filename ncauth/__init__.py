"""ncauth: Dovecot logins checked against Nextcloud's own user database.

Importing the package is deliberately cheap (no database or hashing libraries):
``ncauth-checkpassword`` must be able to start, and fail safely, even when a
dependency is missing.
"""

__version__ = "0.1.0"
