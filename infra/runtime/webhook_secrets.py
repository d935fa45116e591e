"""What `WEBHOOK_SIGNING_SECRETS` holds: each tenant's Standard Webhooks signing secrets.

A secret is written as the specification gives it to a receiver, `whsec_` then the base64 of
the key (https://www.standardwebhooks.com). It is checked when the settings load, so a typo
stops the worker at start instead of sending requests no receiver can verify; messages name the
tenant and the secret's position, never the secret.
"""

from __future__ import annotations

import base64
import binascii

SECRET_PREFIX = "whsec_"
# The specification's bounds on a key: 24 to 64 bytes (192 to 512 bits).
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError saying what is wrong with it,
    without quoting it."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"does not start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"is not valid base64 after {SECRET_PREFIX!r}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"holds a key of {len(key)} bytes; "
                         f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES} are allowed")
    return key
