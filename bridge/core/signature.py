"""Verify GitHub's ``X-Hub-Signature-256`` over the raw body.

Fail closed: ``sha256=`` only (the legacy SHA-1 ``X-Hub-Signature`` is never consulted), every
configured secret tried in constant time (several during a rotation), an empty secret list refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from bridge.core.errors import ConfigError, SignatureMismatch, SignatureMissing

_PREFIX = "sha256="


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Sequence[bytes]) -> None:
    """Raise unless ``header`` is a valid signature of ``body`` under one of ``secrets``.

    Every secret is compared (no early exit), so timing reveals neither which secret matched nor
    how much of the digest did.
    """
    if not secrets or any(not s for s in secrets):
        raise ConfigError("no webhook secret is configured")
    if not header:
        raise SignatureMissing()
    if not header.startswith(_PREFIX) or len(header) != len(_PREFIX) + 64:
        raise SignatureMismatch("not a sha256= signature")
    given = header.encode("ascii", "replace")
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign(body, secret).encode("ascii"), given)
    if not matched:
        raise SignatureMismatch()
