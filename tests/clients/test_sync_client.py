"""SyncClient against httpx.MockTransport: what it sends, what it parses, how it fails."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge import __version__
from bridge.clients.sync import (
    DEFAULT_EMBEDDING_MODEL,
    SyncBadRequest,
    SyncClient,
    SyncConflict,
    SyncError,
    SyncForbidden,
    SyncNotFound,
    SyncPreconditionFailed,
    SyncProtocolError,
    SyncRateLimited,
    SyncServerError,
    SyncTimeout,
    SyncTransportError,
    SyncUnauthorized,
    SyncUnexpectedStatus,
)
from tests.clients.conftest import BASE_URL, TOKEN, FakeSync, sample

pytestmark = pytest.mark.anyio

SOURCE_ID = "5d6c1f0e-8a4b-4c1e-9f3a-2b7d9e0c1a22"
INVOCATION_ID = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
SHA = "3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a"


def _job(number: int, collection: str) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "status": "pending",
        "source_id": SOURCE_ID,
        "metadata": {
            "database_name": "code",
            "collection_name": collection,
            "github": {"git_ref_identifier": {"sha": SHA}},
        },
        "created_at": "2026-03-04T10:00:00Z",
    }


# Requests: paths, headers, bodies, query names


async def test_every_request_carries_the_token_and_user_agent(sync: SyncClient, fake: FakeSync) -> None:
    """The API key travels as x-chroma-token, with a chroma-sync-bridge User-Agent."""
    fake.answer(200, sample("source.json"))
    await sync.get_source(SOURCE_ID)
    assert fake.last.headers["x-chroma-token"] == TOKEN
    assert fake.last.headers["user-agent"] == f"chroma-sync-bridge/{__version__}"


async def test_create_source_sends_the_seeds_flat_body(sync: SyncClient, fake: FakeSync) -> None:
    """By default the model is a top-level embedding_model and the GitHub settings sit under github."""
    fake.answer(200, {"source_id": SOURCE_ID})
    source_id = await sync.create_source(
        database_name="code", repository="acme/api", app_id="123456", include_globs=["**/*.py"]
    )
    assert source_id == SOURCE_ID
    assert (fake.last.method, fake.last.url.path) == ("POST", "/api/v1/sources")
    assert fake.last_json() == {
        "database_name": "code",
        "embedding_model": DEFAULT_EMBEDDING_MODEL,
        "github": {"repository": "acme/api", "app_id": "123456", "include_globs": ["**/*.py"]},
    }


async def test_create_source_can_send_the_nested_embedding_shape(fake: FakeSync) -> None:
    """source_body_shape="nested" sends embedding.dense.model instead of embedding_model."""
    fake.answer(201, {"source_id": SOURCE_ID})
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        client = SyncClient(base_url=BASE_URL, token=TOKEN, client=http, source_body_shape="nested")
        await client.create_source(database_name="code", repository="acme/api", embedding_model="m")
    assert fake.last_json() == {
        "database_name": "code",
        "embedding": {"dense": {"model": "m"}},
        "github": {"repository": "acme/api"},
    }


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_create_source_accepts_any_2xx(sync: SyncClient, fake: FakeSync, status: int) -> None:
    """The seeds say 200, the OpenAPI 201: any 2xx with a source_id is a success."""
    fake.answer(status, {"source_id": SOURCE_ID})
    assert await sync.create_source(database_name="code", repository="acme/api") == SOURCE_ID


@pytest.mark.parametrize(
    ("kwargs", "query"),
    [
        ({}, {}),
        ({"database_name": "code"}, {"database_name": "code"}),
        ({"source_type": "github"}, {"source_type": "github"}),
        ({"app_id": "42"}, {"source_type": "github", "github.app_id": "42"}),
        ({"repository": "acme/api"}, {"source_type": "github", "github.repository": "acme/api"}),
        ({"limit": 10, "offset": 20, "order_by": "ASC"}, {"limit": "10", "offset": "20", "order_by": "ASC"}),
    ],
)
async def test_list_sources_uses_the_documented_query_names(
    sync: SyncClient, fake: FakeSync, kwargs: dict[str, Any], query: dict[str, str]
) -> None:
    """Filters use the seeds' names: database_name, source_type, github.*, limit, offset, order_by."""
    fake.answer(200, [])
    await sync.list_sources(**kwargs)
    assert fake.last.url.path == "/api/v1/sources"
    assert dict(fake.last.url.params) == query


async def test_list_sources_parses_every_source(sync: SyncClient, fake: FakeSync) -> None:
    """A page of sources comes back typed, in the server's order."""
    fake.answer(200, sample("sources.json"))
    sources = await sync.list_sources()
    assert [source.github.repository for source in sources if source.github] == ["acme/web", "acme/api"]


async def test_get_source_quotes_the_id_into_one_path_segment(sync: SyncClient, fake: FakeSync) -> None:
    """An id with / or ? cannot reach another endpoint."""
    fake.answer(200, sample("source.json"))
    await sync.get_source("../invocations?x=1")
    assert fake.last.url.raw_path == b"/api/v1/sources/..%2Finvocations%3Fx%3D1"


async def test_delete_source_sends_delete(sync: SyncClient, fake: FakeSync) -> None:
    """Deleting is DELETE /api/v1/sources/{id}, answered 204 with no body."""
    fake.answer(204)
    await sync.delete_source(SOURCE_ID)
    assert (fake.last.method, fake.last.url.path) == ("DELETE", f"/api/v1/sources/{SOURCE_ID}")


@pytest.mark.parametrize(
    ("ref", "body_ref"),
    [({"sha": SHA}, {"sha": SHA}), ({"branch": "release/1.2"}, {"branch": "release/1.2"})],
)
async def test_create_invocation_sends_collection_and_one_ref(
    sync: SyncClient, fake: FakeSync, ref: dict[str, str], body_ref: dict[str, str]
) -> None:
    """The body is target_collection_name plus ref_identifier holding exactly the given ref."""
    fake.answer(200, {"invocation_id": INVOCATION_ID})
    await sync.create_invocation(SOURCE_ID, collection="acme-api-main-3f2a", **ref)
    assert fake.last.url.path == f"/api/v1/sources/{SOURCE_ID}/invocations"
    assert fake.last_json() == {"target_collection_name": "acme-api-main-3f2a", "ref_identifier": body_ref}


@pytest.mark.parametrize(("status", "key"), [(200, "invocation_id"), (201, "invocation_id"), (201, "id")])
async def test_create_invocation_returns_the_id_under_either_key(
    sync: SyncClient, fake: FakeSync, status: int, key: str
) -> None:
    """The answer may be 200 or 201 and name the id invocation_id or id."""
    fake.answer(status, {key: INVOCATION_ID})
    assert await sync.create_invocation(SOURCE_ID, collection="c-1", sha=SHA) == INVOCATION_ID


@pytest.mark.parametrize("ref", [{}, {"sha": SHA, "branch": "main"}])
async def test_create_invocation_needs_exactly_one_ref(
    sync: SyncClient, fake: FakeSync, ref: dict[str, str]
) -> None:
    """Neither or both of sha and branch is a programming error, caught before any request."""
    with pytest.raises(ValueError, match="exactly one"):
        await sync.create_invocation(SOURCE_ID, collection="c-1", **ref)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("kwargs", "query"),
    [
        ({"source_id": SOURCE_ID}, {"source_id": SOURCE_ID}),
        ({"database_name": "code", "status": "pending"}, {"database_name": "code", "status": "pending"}),
        (
            {"repository": "acme/api", "app_id": "7"},
            {"source_type": "github", "github.repository": "acme/api", "github.app_id": "7"},
        ),
        ({"limit": 5, "offset": 0, "order_by": "DESC"}, {"limit": "5", "offset": "0", "order_by": "DESC"}),
    ],
)
async def test_list_invocations_uses_the_documented_query_names(
    sync: SyncClient, fake: FakeSync, kwargs: dict[str, Any], query: dict[str, str]
) -> None:
    """Filters become source_id, database_name, status, source_type, github.*, limit, offset, order_by."""
    fake.answer(200, [])
    await sync.list_invocations(**kwargs)
    assert fake.last.url.path == "/api/v1/invocations"
    assert dict(fake.last.url.params) == query


async def test_list_invocations_parses_every_status(sync: SyncClient, fake: FakeSync) -> None:
    """A recorded page with pending, processing, failed and cancelled jobs parses in order."""
    fake.answer(200, sample("invocations.json"))
    invocations = await sync.list_invocations()
    assert [item.status.state for item in invocations] == ["pending", "processing", "failed", "cancelled"]
    assert invocations[2].source_id is None


@pytest.mark.parametrize("name", ["invocation_openapi.json", "invocation_overview.json"])
async def test_get_invocation_reads_both_published_shapes(
    sync: SyncClient, fake: FakeSync, name: str
) -> None:
    """The OpenAPI's id and the overview's invocation_id give the same Invocation."""
    fake.answer(200, sample(name))
    invocation = await sync.get_invocation(INVOCATION_ID)
    assert fake.last.url.path == f"/api/v1/invocations/{INVOCATION_ID}"
    assert invocation.id == INVOCATION_ID
    assert invocation.status.state == "complete"
    assert invocation.collection_name == "acme-api-main-3f2a1b9c8d7e"


async def test_cancel_invocation_sends_put(sync: SyncClient, fake: FakeSync) -> None:
    """Cancelling is PUT /api/v1/invocations/{id}, answered 202."""
    fake.answer(202)
    await sync.cancel_invocation(INVOCATION_ID)
    assert (fake.last.method, fake.last.url.path) == ("PUT", f"/api/v1/invocations/{INVOCATION_ID}")


async def test_cancel_of_a_running_invocation_raises_precondition_failed(
    sync: SyncClient, fake: FakeSync
) -> None:
    """412 means the invocation is no longer pending."""
    fake.answer(412, {"error": "Precondition Failed", "message": "invocation is processing"})
    with pytest.raises(SyncPreconditionFailed):
        await sync.cancel_invocation(INVOCATION_ID)


# find_invocation


async def test_find_invocation_returns_the_newest_match(sync: SyncClient, fake: FakeSync) -> None:
    """Newest first, the first job writing to the collection wins; other collections are skipped."""
    fake.answer(200, [_job(1, "other"), _job(2, "wanted"), _job(3, "wanted")])
    found = await sync.find_invocation(SOURCE_ID, collection="wanted")
    assert found is not None
    assert found.id.endswith("000000000002")
    assert dict(fake.last.url.params) == {
        "source_id": SOURCE_ID,
        "order_by": "DESC",
        "limit": "100",
        "offset": "0",
    }


async def test_find_invocation_pages_until_found(sync: SyncClient, fake: FakeSync) -> None:
    """Full pages lead to the next offset."""
    fake.answer(200, [_job(1, "a"), _job(2, "b")])
    fake.answer(200, [_job(3, "c"), _job(4, "wanted")])
    found = await sync.find_invocation(SOURCE_ID, collection="wanted", page_size=2)
    assert found is not None
    assert [request.url.params["offset"] for request in fake.requests] == ["0", "2"]


async def test_find_invocation_stops_at_a_short_page(sync: SyncClient, fake: FakeSync) -> None:
    """A page shorter than page_size is the last one: None, without another request."""
    fake.answer(200, [_job(1, "a"), _job(2, "b")])
    fake.answer(200, [_job(3, "c")])
    assert await sync.find_invocation(SOURCE_ID, collection="wanted", page_size=2) is None
    assert len(fake.requests) == 2


async def test_find_invocation_gives_up_after_max_pages(sync: SyncClient, fake: FakeSync) -> None:
    """The search is bounded by max_pages."""
    for number in range(3):
        fake.answer(200, [_job(number, "elsewhere")])
    assert await sync.find_invocation(SOURCE_ID, collection="x", page_size=1, max_pages=3) is None
    assert len(fake.requests) == 3


# Errors


@pytest.mark.parametrize(
    ("status", "cls", "retryable", "outcome_unknown", "reason"),
    [
        (400, SyncBadRequest, False, False, "sync_bad_request"),
        (401, SyncUnauthorized, False, False, "sync_auth"),
        (403, SyncForbidden, False, False, "sync_auth"),
        (404, SyncNotFound, False, False, "sync_not_found"),
        (409, SyncConflict, False, False, "sync_conflict"),
        (412, SyncPreconditionFailed, False, False, "sync_precondition"),
        (429, SyncRateLimited, True, False, "sync_rate_limited"),
        (500, SyncServerError, True, True, "sync_server_error"),
        (502, SyncServerError, True, True, "sync_server_error"),
        (503, SyncServerError, True, True, "sync_server_error"),
        (418, SyncUnexpectedStatus, False, False, "sync_unexpected_status"),
        (302, SyncUnexpectedStatus, False, False, "sync_unexpected_status"),
    ],
)
async def test_statuses_map_to_typed_errors(
    sync: SyncClient,
    fake: FakeSync,
    status: int,
    cls: type[SyncError],
    retryable: bool,
    outcome_unknown: bool,
    reason: str,
) -> None:
    """Each status becomes its class, with its retry and outcome semantics and reason code."""
    fake.answer(status, {"error": "Some Error", "message": "details"})
    with pytest.raises(cls) as caught:
        await sync.create_invocation(SOURCE_ID, collection="c-1", sha=SHA)
    error = caught.value
    assert type(error) is cls
    assert (error.retryable, error.outcome_unknown, error.reason) == (retryable, outcome_unknown, reason)


async def test_http_error_carries_the_servers_error_and_message(sync: SyncClient, fake: FakeSync) -> None:
    """status, error and message come from the {"error", "message"} body and show in str()."""
    fake.answer(409, sample("error_conflict.json"))
    with pytest.raises(SyncConflict) as caught:
        await sync.create_invocation(SOURCE_ID, collection="acme-api-main-3f2a1b9c8d7e", sha=SHA)
    error = caught.value
    assert (error.status, error.error) == (409, "Conflict")
    assert error.message == "collection acme-api-main-3f2a1b9c8d7e already holds synced data"
    assert str(error) == (
        "Chroma Sync reported a conflict (the source exists, or the collection already holds synced data): "
        f"POST /api/v1/sources/{SOURCE_ID}/invocations -> 409 Conflict: "
        "collection acme-api-main-3f2a1b9c8d7e already holds synced data"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html><body>502 Bad Gateway</body></html>", "<html><body>502 Bad Gateway</body></html>"),
        ("", None),
        ('["not", "an", "object"]', None),
    ],
)
async def test_http_error_tolerates_a_non_json_body(
    sync: SyncClient, fake: FakeSync, text: str, message: str | None
) -> None:
    """A proxy's HTML or an empty body still gives a typed error, with no error field."""
    fake.answer(502, text=text)
    with pytest.raises(SyncServerError) as caught:
        await sync.get_source(SOURCE_ID)
    assert (caught.value.error, caught.value.message) == (None, message)


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        (
            {"retry-after": "Wed, 04 Mar 2026 10:01:30 GMT", "date": "Wed, 04 Mar 2026 10:00:00 GMT"},
            90.0,
        ),
    ],
)
async def test_rate_limited_error_carries_retry_after(
    sync: SyncClient, fake: FakeSync, headers: dict[str, str], retry_after: float | None
) -> None:
    """Retry-After (seconds, or an HTTP-date against the response's Date) becomes retry_after."""
    fake.answer(429, {"error": "Too Many Requests", "message": "slow down"}, headers=headers)
    with pytest.raises(SyncRateLimited) as caught:
        await sync.list_invocations()
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    ("raised", "cls", "outcome_unknown"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), SyncTransportError, False),
        (httpx.ConnectTimeout("timed out"), SyncTimeout, False),
        (httpx.PoolTimeout("no connection available"), SyncTimeout, False),
        (httpx.ReadTimeout("timed out"), SyncTimeout, True),
        (httpx.WriteTimeout("timed out"), SyncTimeout, True),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            SyncTransportError,
            True,
        ),
        (httpx.ReadError("connection reset by peer"), SyncTransportError, True),
        (httpx.WriteError("broken pipe"), SyncTransportError, True),
    ],
)
async def test_transport_errors_map_to_retryable_errors(
    sync: SyncClient, fake: FakeSync, raised: Exception, cls: type[SyncError], outcome_unknown: bool
) -> None:
    """Transport failures are retryable; only those before sending leave the outcome known."""
    fake.fail(raised)
    with pytest.raises(cls) as caught:
        await sync.create_invocation(SOURCE_ID, collection="c-1", sha=SHA)
    assert type(caught.value) is cls
    assert (caught.value.retryable, caught.value.outcome_unknown) == (True, outcome_unknown)
    assert type(raised).__name__ in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"unexpected": "shape"},
        {"invocation_id": 17},
    ],
)
async def test_a_2xx_off_schema_is_a_protocol_error(sync: SyncClient, fake: FakeSync, body: Any) -> None:
    """A success whose body does not match is not retryable, but the call may have taken effect."""
    fake.answer(200, body)
    with pytest.raises(SyncProtocolError) as caught:
        await sync.create_invocation(SOURCE_ID, collection="c-1", sha=SHA)
    assert (caught.value.retryable, caught.value.outcome_unknown) == (False, True)


async def test_a_2xx_that_is_not_json_is_a_protocol_error(sync: SyncClient, fake: FakeSync) -> None:
    """A success with an HTML body is a protocol error naming the request."""
    fake.answer(200, text="<html>maintenance</html>")
    with pytest.raises(SyncProtocolError, match=f"GET /api/v1/invocations/{INVOCATION_ID}"):
        await sync.get_invocation(INVOCATION_ID)


async def test_the_token_never_appears_in_an_http_error(sync: SyncClient, fake: FakeSync) -> None:
    """A server echoing the key in its message does not put it into str() or repr()."""
    fake.answer(401, {"error": "Unauthorized", "message": f"invalid token {TOKEN}"})
    with pytest.raises(SyncUnauthorized) as caught:
        await sync.list_sources()
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert caught.value.message == "invalid token [redacted]"


async def test_the_token_never_appears_in_a_transport_error(sync: SyncClient, fake: FakeSync) -> None:
    """A transport error whose text contains the key is redacted too."""
    fake.fail(httpx.ReadError(f"reset while sending x-chroma-token: {TOKEN}"))
    with pytest.raises(SyncTransportError) as caught:
        await sync.list_sources()
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert caught.value.__cause__ is None


def test_the_client_repr_hides_the_token() -> None:
    """repr(SyncClient) shows the base URL, not the key."""
    assert TOKEN not in repr(SyncClient(base_url=BASE_URL, token=TOKEN))


def test_an_empty_token_is_refused() -> None:
    """No key, no client."""
    with pytest.raises(ValueError, match="API key"):
        SyncClient(base_url=BASE_URL, token="")


# Construction and ownership


@pytest.mark.parametrize("base_url", ["https://proxy.test/sync/", "https://proxy.test/sync"])
async def test_base_url_may_carry_a_path_prefix(fake: FakeSync, base_url: str) -> None:
    """Paths are appended to the base URL, trailing slash or not."""
    fake.answer(200, [])
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        await SyncClient(base_url=base_url, token=TOKEN, client=http).list_sources()
    assert str(fake.last.url) == "https://proxy.test/sync/api/v1/sources"


async def test_a_callers_client_stays_open(fake: FakeSync) -> None:
    """aclose leaves an httpx client the caller passed in open."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        async with SyncClient(base_url=BASE_URL, token=TOKEN, client=http):
            pass
        assert not http.is_closed


async def test_an_owned_client_is_closed() -> None:
    """Without a client argument, the SyncClient makes one and closes it on exit."""
    sync = SyncClient(base_url=BASE_URL, token=TOKEN)
    async with sync:
        pass
    assert sync._client.is_closed
