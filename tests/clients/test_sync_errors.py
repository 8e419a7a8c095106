"""The Sync error tree: Retry-After parsing, status mapping, messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.clients.sync_errors import (
    MAX_RETRY_AFTER,
    SyncConflict,
    SyncError,
    SyncHTTPError,
    SyncProtocolError,
    SyncServerError,
    SyncTimeout,
    SyncTransportError,
    SyncUnexpectedStatus,
    error_from_response,
    parse_retry_after,
)

NOW = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-5", 0.0),
        ("86400000", MAX_RETRY_AFTER),
        ("inf", MAX_RETRY_AFTER),
        ("nan", None),
        ("soon", None),
        ("Wed, 04 Mar 2026 10:00:30 GMT", 30.0),
        ("Wednesday, 04-Mar-26 10:00:30 GMT", 30.0),
        ("Wed, 04 Mar 2026 09:59:00 GMT", 0.0),
        ("Wed, 04 Mar 2027 10:00:00 GMT", MAX_RETRY_AFTER),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Delta-seconds or an HTTP-date, clamped to [0, MAX_RETRY_AFTER]; garbage is None."""
    assert parse_retry_after(value, now=NOW) == seconds


def test_http_date_retry_after_is_measured_from_the_response_date() -> None:
    """A Date header on the response wins over the local clock (no skew)."""
    headers = {"retry-after": "Wed, 04 Mar 2026 12:00:10 GMT", "date": "Wed, 04 Mar 2026 12:00:00 GMT"}
    error = error_from_response(method="GET", path="/p", status=503, headers=headers, body="", now=NOW)
    assert error.retry_after == 10.0


@pytest.mark.parametrize(
    ("status", "cls"),
    [(409, SyncConflict), (500, SyncServerError), (599, SyncServerError), (600, SyncUnexpectedStatus)],
)
def test_error_from_response_picks_the_class(status: int, cls: type[SyncHTTPError]) -> None:
    """One table maps statuses to classes; 5xx is a range; the rest is unexpected."""
    error = error_from_response(method="GET", path="/p", status=status, headers={}, body="", now=NOW)
    assert type(error) is cls
    assert error.status == status


def test_a_long_message_is_cut() -> None:
    """A server's message is capped so a log line stays a line."""
    body = '{"error": "Bad Request", "message": "' + "x" * 5000 + '"}'
    error = error_from_response(method="GET", path="/p", status=400, headers={}, body=body, now=NOW)
    assert error.message is not None
    assert len(error.message) == 200


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (SyncTransportError("ReadError", method="GET", path="/a"), "Chroma Sync could not be reached"),
        (SyncTimeout("ReadTimeout", method="GET", path="/a"), "Chroma Sync did not answer in time"),
        (
            SyncProtocolError("200: id: missing", method="GET", path="/a"),
            "Chroma Sync answered 2xx with a body",
        ),
    ],
)
def test_the_docstring_is_the_message(error: SyncError, text: str) -> None:
    """str() starts with the class docstring, then the request, then the detail."""
    assert str(error).startswith(text)
    assert str(error).endswith(f"GET /a: {error.detail}")


def test_outcome_unknown_can_be_set_per_error() -> None:
    """A transport error raised before sending says the outcome is known."""
    assert SyncTransportError("ConnectError", outcome_unknown=False).outcome_unknown is False
    assert SyncTransportError("ReadError").outcome_unknown is True


def test_every_error_is_a_sync_error() -> None:
    """Callers can catch SyncError for any failure of the client."""
    error = error_from_response(method="PUT", path="/p", status=412, headers={}, body="", now=NOW)
    assert isinstance(error, SyncError)
    assert not error.retryable
