"""Everything that can go wrong when talking to Chroma Sync, as one tree.

```
SyncError                       reason                  retryable  outcome_unknown
├── SyncTransportError          sync_transport          yes        yes, no when never sent
│   └── SyncTimeout             sync_timeout            yes        yes, no for connect/pool
├── SyncHTTPError               (status, error, message, retry_after)
│   ├── SyncBadRequest          sync_bad_request        no         no    400
│   ├── SyncUnauthorized        sync_auth               no         no    401 (configuration: be loud)
│   ├── SyncForbidden           sync_auth               no         no    403 (configuration: be loud)
│   ├── SyncNotFound            sync_not_found          no         no    404
│   ├── SyncConflict            sync_conflict           no         no    409 (create: already indexed)
│   ├── SyncPreconditionFailed  sync_precondition       no         no    412 (cancel: not pending)
│   ├── SyncRateLimited         sync_rate_limited       yes        no    429
│   ├── SyncServerError         sync_server_error       yes        yes   5xx
│   └── SyncUnexpectedStatus    sync_unexpected_status  no         no    anything else
└── SyncProtocolError           sync_protocol           no         yes   a 2xx the schema does not match
```

``reason`` is the log field and the metric label. ``retryable`` says whether the same call may succeed
later; ``outcome_unknown`` says the server may have acted on the request although the caller saw an
error, so a retried create must first look for what the lost answer would have returned.

The class docstring is the message. ``str(error)`` names the method, the path, the status and the
server's ``error``/``message``; it never contains the token (the client redacts it from anything the
server echoes). Statuses map to classes in one place: :func:`error_from_response`.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar

MAX_RETRY_AFTER = 3600.0
"""Retry-After values above this many seconds are capped: a server asking for more is misbehaving."""

_SNIPPET = 200


class SyncError(Exception):
    """Chroma Sync call failed."""

    reason: ClassVar[str] = "sync_error"
    retryable: bool = False
    outcome_unknown: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        outcome_unknown: bool | None = None,
    ) -> None:
        self.detail = detail
        self.method = method
        self.path = path
        if outcome_unknown is not None:
            self.outcome_unknown = outcome_unknown
        super().__init__(self._render())

    def _where(self) -> str:
        return " ".join(part for part in (self.method, self.path) if part)

    def _render(self) -> str:
        parts = [(self.__doc__ or self.reason).strip().rstrip(".")]
        parts += [part for part in (self._where(), self.detail) if part]
        return ": ".join(parts)


class SyncTransportError(SyncError):
    """Chroma Sync could not be reached or the connection broke."""

    reason = "sync_transport"
    retryable = True
    outcome_unknown = True


class SyncTimeout(SyncTransportError):
    """Chroma Sync did not answer in time."""

    reason = "sync_timeout"


class SyncProtocolError(SyncError):
    """Chroma Sync answered 2xx with a body that does not match its documented schema."""

    reason = "sync_protocol"
    outcome_unknown = True


class SyncHTTPError(SyncError):
    """Chroma Sync answered with an error status."""

    reason = "sync_http"

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int,
        error: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.message = message
        self.retry_after = retry_after
        server_says = ": ".join(part for part in (error, message) if part)
        detail = f"{status} {server_says}".strip()
        super().__init__(detail, method=method, path=path)

    def _render(self) -> str:
        doc = (self.__doc__ or self.reason).strip().rstrip(".")
        return f"{doc}: {self._where()} -> {self.detail}"


class SyncBadRequest(SyncHTTPError):
    """Chroma Sync rejected the request as malformed."""

    reason = "sync_bad_request"


class SyncUnauthorized(SyncHTTPError):
    """Chroma Sync rejected the API key (x-chroma-token missing or invalid)."""

    reason = "sync_auth"


class SyncForbidden(SyncHTTPError):
    """Chroma Sync refused the operation for this API key."""

    reason = "sync_auth"


class SyncNotFound(SyncHTTPError):
    """Chroma Sync does not know the source, invocation, database or GitHub App."""

    reason = "sync_not_found"


class SyncConflict(SyncHTTPError):
    """Chroma Sync reported a conflict (the source exists, or the collection already holds synced data)."""

    reason = "sync_conflict"


class SyncPreconditionFailed(SyncHTTPError):
    """Chroma Sync refused: the invocation is no longer pending."""

    reason = "sync_precondition"


class SyncRateLimited(SyncHTTPError):
    """Chroma Sync is rate limiting this API key."""

    reason = "sync_rate_limited"
    retryable = True


class SyncServerError(SyncHTTPError):
    """Chroma Sync failed on its side."""

    reason = "sync_server_error"
    retryable = True
    outcome_unknown = True


class SyncUnexpectedStatus(SyncHTTPError):
    """Chroma Sync answered with an undocumented status."""

    reason = "sync_unexpected_status"


_BY_STATUS: Mapping[int, type[SyncHTTPError]] = {
    400: SyncBadRequest,
    401: SyncUnauthorized,
    403: SyncForbidden,
    404: SyncNotFound,
    409: SyncConflict,
    412: SyncPreconditionFailed,
    429: SyncRateLimited,
}


def error_from_response(
    *, method: str, path: str, status: int, headers: Mapping[str, str], body: str, now: datetime
) -> SyncHTTPError:
    """The typed error for a non-2xx answer; the one place statuses become classes.

    ``body`` should already have the token redacted. ``now`` resolves an HTTP-date ``Retry-After``;
    the response's own ``Date`` header is preferred when it parses, which cancels clock skew.
    """
    if status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif 500 <= status <= 599:
        cls = SyncServerError
    else:
        cls = SyncUnexpectedStatus
    error, message = _parse_error_body(body)
    server_now = _parse_http_date(headers.get("date")) or now
    retry_after = parse_retry_after(headers.get("retry-after"), now=server_now)
    return cls(method=method, path=path, status=status, error=error, message=message, retry_after=retry_after)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), within [0, MAX]."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        when = _parse_http_date(value)
        if when is None:
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _parse_error_body(body: str) -> tuple[str | None, str | None]:
    """``(error, message)`` from ``{"error", "message"}``; a non-JSON body becomes a short message."""
    try:
        data = json.loads(body)
    except ValueError:
        text = " ".join(body.split())
        return None, (text[:_SNIPPET] or None)
    if not isinstance(data, dict):
        return None, None
    error, message = data.get("error"), data.get("message")
    return (
        error if isinstance(error, str) else None,
        message[:_SNIPPET] if isinstance(message, str) else None,
    )
