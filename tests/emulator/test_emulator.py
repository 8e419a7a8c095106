"""The real SyncClient against the emulator over real loopback HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from typing import Any

import httpx
import pytest

from bridge.clients.sync import (
    SyncBadRequest,
    SyncClient,
    SyncConflict,
    SyncNotFound,
    SyncPreconditionFailed,
    SyncRateLimited,
    SyncServerError,
    SyncTimeout,
    SyncTransportError,
    SyncUnauthorized,
)
from bridge.emulator import EmulatorState, FaultRule, serve_emulator
from bridge.emulator.testing import FakeClock, run_emulator_in_thread
from tests.emulator.conftest import TOKEN

pytestmark = pytest.mark.anyio

SHA = "3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a"
MISSING = str(uuid.uuid4())


async def _create(sync: SyncClient, source_id: str, collection: str = "acme-api-main-1") -> str:
    return await sync.create_invocation(source_id, collection=collection, sha=SHA)


# Lifecycle on the clock


async def test_an_invocation_walks_pending_processing_complete(
    sync: SyncClient, source_id: str, clock: FakeClock
) -> None:
    """pending for pending_seconds, processing for processing_seconds, then complete with its timing."""
    invocation_id = await _create(sync, source_id)
    assert (await sync.get_invocation(invocation_id)).status.state == "pending"
    clock.advance(1.0)
    assert (await sync.get_invocation(invocation_id)).status.state == "processing"
    clock.advance(2.0)
    status = (await sync.get_invocation(invocation_id)).status
    assert (status.state, status.duration_ms) == ("complete", 2000)
    assert status.finished_at is not None
    assert status.finished_at.timestamp() == clock.now


async def test_an_invocation_reports_what_it_syncs(sync: SyncClient, source_id: str) -> None:
    """The job carries its source, database, collection and sha."""
    invocation = await sync.get_invocation(await _create(sync, source_id, "coll-x"))
    assert invocation.source_id == source_id
    assert (invocation.metadata.database_name, invocation.collection_name) == ("code", "coll-x")
    assert invocation.ref is not None
    assert invocation.ref.sha == SHA


async def test_a_failing_repository_fails(
    sync: SyncClient, source_id: str, state: EmulatorState, clock: FakeClock
) -> None:
    """Invocations of a repository in failing_repositories end failed with an error."""
    state.configure(failing_repositories=["ACME/api"])
    invocation_id = await _create(sync, source_id)
    clock.advance(3.0)
    status = (await sync.get_invocation(invocation_id)).status
    assert status.state == "failed"
    assert status.error is not None
    assert "acme/api" in status.error


async def test_fail_ratio_one_fails_everything(
    sync: SyncClient, source_id: str, state: EmulatorState, clock: FakeClock
) -> None:
    """fail_ratio=1 makes every new invocation fail."""
    state.configure(fail_ratio=1.0)
    invocation_id = await _create(sync, source_id)
    clock.advance(3.0)
    assert (await sync.get_invocation(invocation_id)).status.state == "failed"


async def test_create_onto_a_finished_collection_conflicts(
    sync: SyncClient, source_id: str, clock: FakeClock
) -> None:
    """Once an invocation completed into a collection, creating onto it answers 409."""
    await _create(sync, source_id, "done-coll")
    clock.advance(3.0)
    with pytest.raises(SyncConflict) as caught:
        await _create(sync, source_id, "done-coll")
    assert caught.value.error == "Conflict"


async def test_create_onto_an_unfinished_collection_is_allowed(sync: SyncClient, source_id: str) -> None:
    """A collection whose invocation is still pending holds no finished data: creating again works."""
    first = await _create(sync, source_id, "busy-coll")
    second = await _create(sync, source_id, "busy-coll")
    assert first != second


async def test_finished_ingest_counts_without_anyone_reading(
    sync: SyncClient, source_id: str, state: EmulatorState, clock: FakeClock
) -> None:
    """Completion is evaluated on every operation, not only when the invocation itself is read."""
    await _create(sync, source_id, "silent-coll")
    clock.advance(3.0)
    with pytest.raises(SyncConflict):
        await _create(sync, source_id, "silent-coll")
    assert state.collections[("code", "silent-coll")] is True


async def test_cancel_pending_cancels(sync: SyncClient, source_id: str, clock: FakeClock) -> None:
    """A pending invocation is cancelled by PUT and stays cancelled as time passes."""
    invocation_id = await _create(sync, source_id)
    await sync.cancel_invocation(invocation_id)
    clock.advance(60.0)
    assert (await sync.get_invocation(invocation_id)).status.state == "cancelled"


@pytest.mark.parametrize("elapsed", [1.0, 3.0])
async def test_cancel_after_pending_is_precondition_failed(
    sync: SyncClient, source_id: str, clock: FakeClock, elapsed: float
) -> None:
    """Processing and complete invocations cannot be cancelled: 412."""
    invocation_id = await _create(sync, source_id)
    clock.advance(elapsed)
    with pytest.raises(SyncPreconditionFailed):
        await sync.cancel_invocation(invocation_id)


async def test_cancel_twice_is_precondition_failed(sync: SyncClient, source_id: str) -> None:
    """A cancelled invocation is not pending any more."""
    invocation_id = await _create(sync, source_id)
    await sync.cancel_invocation(invocation_id)
    with pytest.raises(SyncPreconditionFailed):
        await sync.cancel_invocation(invocation_id)


async def test_cancel_answers_202_with_an_empty_body(
    raw: httpx.AsyncClient, sync: SyncClient, source_id: str
) -> None:
    """The cancel answer is 202 with nothing in it."""
    invocation_id = await _create(sync, source_id)
    response = await raw.put(f"/api/v1/invocations/{invocation_id}")
    assert (response.status_code, response.content) == (202, b"")


# Sources


async def test_a_source_reads_back_as_created(sync: SyncClient) -> None:
    """get_source returns the database, model and GitHub settings given at creation."""
    source_id = await sync.create_source(
        database_name="code", repository="acme/web", app_id="7", include_globs=["src/**"]
    )
    source = await sync.get_source(source_id)
    assert (source.id, source.database_name, source.embedding_model) == (
        source_id,
        "code",
        "Qwen/Qwen3-Embedding-0.6B",
    )
    assert source.github is not None
    assert (source.github.repository, source.github.app_id, source.github.include_globs) == (
        "acme/web",
        "7",
        ("src/**",),
    )


async def test_the_nested_embedding_body_is_accepted(base_url: str) -> None:
    """Create-source also takes embedding: {dense: {model}}."""
    async with SyncClient(base_url=base_url, token=TOKEN, source_body_shape="nested") as sync:
        source_id = await sync.create_source(database_name="code", repository="acme/nested")
        assert (await sync.get_source(source_id)).embedding_model == "Qwen/Qwen3-Embedding-0.6B"


async def test_a_duplicate_source_conflicts(sync: SyncClient, source_id: str) -> None:
    """The same repository in the same database twice answers 409 (repository names are case-insensitive)."""
    with pytest.raises(SyncConflict):
        await sync.create_source(database_name="code", repository="ACME/API")


async def test_the_same_repository_in_another_database_is_a_new_source(
    sync: SyncClient, source_id: str
) -> None:
    """Uniqueness is per database."""
    assert await sync.create_source(database_name="other", repository="acme/api") != source_id


async def test_an_unknown_database_is_not_found(sync: SyncClient, state: EmulatorState) -> None:
    """When databases are configured, creating a source elsewhere answers 404."""
    state.configure(databases=["code"])
    with pytest.raises(SyncNotFound):
        await sync.create_source(database_name="nope", repository="acme/api")


async def test_delete_source_removes_it_but_not_its_invocations(
    sync: SyncClient, source_id: str, raw: httpx.AsyncClient
) -> None:
    """DELETE answers 204; the source is gone, its invocations are still there."""
    invocation_id = await _create(sync, source_id)
    response = await raw.delete(f"/api/v1/sources/{source_id}")
    assert response.status_code == 204
    with pytest.raises(SyncNotFound):
        await sync.get_source(source_id)
    assert (await sync.get_invocation(invocation_id)).source_id == source_id


# Lists, filters, pages


async def test_invocations_list_newest_first_by_default(
    sync: SyncClient, source_id: str, clock: FakeClock
) -> None:
    """Without order_by, newest first; ASC reverses it."""
    ids = []
    for number in range(3):
        ids.append(await _create(sync, source_id, f"coll-{number}"))
        clock.advance(0.1)
    assert [item.id for item in await sync.list_invocations()] == ids[::-1]
    assert [item.id for item in await sync.list_invocations(order_by="ASC")] == ids


async def test_invocations_page_with_limit_and_offset(
    sync: SyncClient, source_id: str, clock: FakeClock
) -> None:
    """limit and offset cut the ordered list."""
    ids = []
    for number in range(5):
        ids.append(await _create(sync, source_id, f"coll-{number}"))
        clock.advance(0.1)
    page = await sync.list_invocations(limit=2, offset=1)
    assert [item.id for item in page] == ids[::-1][1:3]


async def test_invocations_filter_by_status(sync: SyncClient, source_id: str) -> None:
    """status=cancelled lists only cancelled invocations."""
    kept = await _create(sync, source_id, "coll-a")
    cancelled = await _create(sync, source_id, "coll-b")
    await sync.cancel_invocation(cancelled)
    assert [item.id for item in await sync.list_invocations(status="cancelled")] == [cancelled]
    assert [item.id for item in await sync.list_invocations(status="pending")] == [kept]


async def test_invocations_filter_by_source_and_repository(sync: SyncClient, source_id: str) -> None:
    """source_id and github.repository select one source's invocations."""
    other = await sync.create_source(database_name="code", repository="acme/web")
    mine = await _create(sync, source_id, "coll-a")
    theirs = await _create(sync, other, "coll-b")
    assert [item.id for item in await sync.list_invocations(source_id=source_id)] == [mine]
    assert [item.id for item in await sync.list_invocations(repository="acme/web")] == [theirs]


async def test_sources_filter_by_repository_and_app(sync: SyncClient, source_id: str) -> None:
    """github.repository and github.app_id select sources."""
    await sync.create_source(database_name="code", repository="acme/web", app_id="99")
    assert [source.id for source in await sync.list_sources(repository="acme/api")] == [source_id]
    assert [source.id for source in await sync.list_sources(app_id="42")] == [source_id]
    assert len(await sync.list_sources(database_name="code")) == 2


async def test_find_invocation_finds_by_collection(
    sync: SyncClient, source_id: str, clock: FakeClock
) -> None:
    """find_invocation pages the emulator's list and finds the newest job for a collection."""
    for number in range(5):
        await _create(sync, source_id, f"coll-{number}")
        clock.advance(0.1)
    wanted = await _create(sync, source_id, "wanted")
    clock.advance(0.1)
    for number in range(5, 10):
        await _create(sync, source_id, f"coll-{number}")
        clock.advance(0.1)
    found = await sync.find_invocation(source_id, collection="wanted", page_size=3)
    assert found is not None
    assert found.id == wanted


async def test_serve_emulator_runs_in_the_current_event_loop() -> None:
    """serve_emulator answers on the given socket until its task is cancelled."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        task = asyncio.create_task(serve_emulator(host=host, port=port, token=TOKEN, sockets=[sock]))
        try:
            async with SyncClient(base_url=f"http://{host}:{port}", token=TOKEN) as sync:
                for _ in range(200):
                    try:
                        assert await sync.list_sources() == []
                        break
                    except SyncTransportError:
                        await asyncio.sleep(0.01)
                else:
                    pytest.fail("serve_emulator never answered")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert task.cancelled()


# Configuration of the published differences


async def test_create_can_answer_201(
    sync: SyncClient, source_id: str, state: EmulatorState, raw: httpx.AsyncClient
) -> None:
    """create_status=201 makes both creates answer 201, which the client accepts."""
    state.configure(create_status=201)
    body = {"target_collection_name": "coll-201", "ref_identifier": {"sha": SHA}}
    response = await raw.post(f"/api/v1/sources/{source_id}/invocations", json=body)
    assert response.status_code == 201
    assert await _create(sync, source_id, "coll-201b")


async def test_legacy_ids_spell_the_job_id_invocation_id(
    sync: SyncClient, source_id: str, state: EmulatorState, raw: httpx.AsyncClient
) -> None:
    """legacy_ids=True returns invocation_id instead of id, which the client reads as well."""
    state.configure(legacy_ids=True)
    invocation_id = await _create(sync, source_id)
    wire = (await raw.get(f"/api/v1/invocations/{invocation_id}")).json()
    assert "id" not in wire
    assert wire["invocation_id"] == invocation_id
    assert (await sync.get_invocation(invocation_id)).id == invocation_id


async def test_jobs_use_the_openapi_shapes(
    sync: SyncClient, source_id: str, raw: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A finished job: id, status {complete: {finished_at, duration_ms}}, source_id, metadata, created_at."""
    invocation_id = await _create(sync, source_id, "shape-coll")
    clock.advance(3.0)
    wire = (await raw.get(f"/api/v1/invocations/{invocation_id}")).json()
    assert set(wire) == {"id", "status", "source_id", "metadata", "created_at"}
    assert set(wire["status"]["complete"]) == {"finished_at", "duration_ms"}
    assert wire["metadata"] == {
        "database_name": "code",
        "collection_name": "shape-coll",
        "github": {"git_ref_identifier": {"sha": SHA}},
    }


# Errors


async def test_a_wrong_token_is_unauthorized(base_url: str) -> None:
    """A wrong x-chroma-token answers 401, which the client raises as SyncUnauthorized."""
    async with SyncClient(base_url=base_url, token="wrong-token") as sync:
        with pytest.raises(SyncUnauthorized) as caught:
            await sync.list_sources()
    assert caught.value.error == "Unauthorized"
    assert "wrong-token" not in str(caught.value)


async def test_a_missing_token_is_unauthorized(base_url: str) -> None:
    """No x-chroma-token at all answers 401 with {"error", "message"}."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/api/v1/invocations")
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message"}


@pytest.mark.parametrize(
    "name",
    ["ab", "x" * 513, "-leading", "trailing-", "has space", "a..b", "192.168.0.1", "naïve-name", "a/b"],
)
async def test_an_invalid_collection_name_is_a_bad_request(
    sync: SyncClient, source_id: str, name: str
) -> None:
    """Collection names follow Chroma's rules: 3-512 of [A-Za-z0-9._-], alnum ends, no '..', not IPv4."""
    with pytest.raises(SyncBadRequest):
        await _create(sync, source_id, name)


@pytest.mark.parametrize(
    "body",
    [
        {"target_collection_name": "coll-1"},
        {"ref_identifier": {"sha": SHA}},
        {"target_collection_name": "coll-1", "ref_identifier": {}},
        {"target_collection_name": "coll-1", "ref_identifier": {"sha": SHA, "branch": "main"}},
        {"target_collection_name": "coll-1", "ref_identifier": {"tag": "v1"}},
        {"target_collection_name": "coll-1", "ref_identifier": {"sha": ""}},
        {"target_collection_name": "coll-1", "ref_identifier": "main"},
        ["not", "an", "object"],
    ],
)
async def test_a_malformed_invocation_body_is_a_bad_request(
    raw: httpx.AsyncClient, source_id: str, body: Any
) -> None:
    """Missing fields and anything but exactly one of sha/branch answer 400."""
    response = await raw.post(f"/api/v1/sources/{source_id}/invocations", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


@pytest.mark.parametrize(
    "body",
    [
        {"embedding_model": "Qwen/Qwen3-Embedding-0.6B", "github": {"repository": "acme/x"}},
        {"database_name": "code", "github": {"repository": "acme/x"}},
        {"database_name": "code", "embedding_model": "other/model", "github": {"repository": "acme/x"}},
        {"database_name": "code", "embedding_model": "Qwen/Qwen3-Embedding-0.6B"},
        {
            "database_name": "code",
            "embedding_model": "Qwen/Qwen3-Embedding-0.6B",
            "github": {"repository": "x"},
        },
        {
            "database_name": "code",
            "embedding_model": "Qwen/Qwen3-Embedding-0.6B",
            "github": {"repository": "acme/x", "include_globs": "*.py"},
        },
    ],
)
async def test_a_malformed_source_body_is_a_bad_request(raw: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """Missing database, model or github, an unsupported model, a bad repository or globs answer 400."""
    response = await raw.post("/api/v1/sources", json=body)
    assert response.status_code == 400


async def test_a_body_that_is_not_json_is_a_bad_request(raw: httpx.AsyncClient) -> None:
    """Unparseable JSON answers 400."""
    response = await raw.post("/api/v1/sources", content=b"{not json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        {"status": "done"},
        {"order_by": "newest"},
        {"limit": "-1"},
        {"offset": "x"},
        {"source_type": "s3"},
        {"github.repository": "acme/api"},
        {"source_type": "github", "github.app_id": "1", "source_id": "not-a-uuid"},
        {"source_id": MISSING, "database_name": "code"},
    ],
)
async def test_bad_list_parameters_are_a_bad_request(raw: httpx.AsyncClient, query: dict[str, str]) -> None:
    """Bad status, order_by, limit, offset, source_type, github.* without source_type=github: 400."""
    response = await raw.get("/api/v1/invocations", params=query)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/sources/not-a-uuid"),
        ("DELETE", "/api/v1/sources/not-a-uuid"),
        ("POST", "/api/v1/sources/not-a-uuid/invocations"),
        ("GET", "/api/v1/invocations/not-a-uuid"),
        ("PUT", "/api/v1/invocations/not-a-uuid"),
    ],
)
async def test_a_non_uuid_id_is_a_bad_request(raw: httpx.AsyncClient, method: str, path: str) -> None:
    """Ids are UUIDs; anything else answers 400."""
    body = {"target_collection_name": "coll-1", "ref_identifier": {"sha": SHA}}
    response = await raw.request(method, path, json=body if method == "POST" else None)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/sources/{MISSING}"),
        ("DELETE", f"/api/v1/sources/{MISSING}"),
        ("POST", f"/api/v1/sources/{MISSING}/invocations"),
        ("GET", f"/api/v1/invocations/{MISSING}"),
        ("PUT", f"/api/v1/invocations/{MISSING}"),
        ("GET", f"/api/v1/invocations?source_id={MISSING}"),
    ],
)
async def test_an_unknown_id_is_not_found(raw: httpx.AsyncClient, method: str, path: str) -> None:
    """Unknown sources and invocations answer 404 with {"error", "message"}."""
    body = {"target_collection_name": "coll-1", "ref_identifier": {"sha": SHA}}
    response = await raw.request(method, path, json=body if method == "POST" else None)
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


@pytest.mark.parametrize(("method", "status"), [("GET", 404), ("PATCH", 405)])
async def test_framework_errors_use_the_error_shape(raw: httpx.AsyncClient, method: str, status: int) -> None:
    """Unknown routes and methods also answer {"error", "message"}."""
    path = "/api/v1/nowhere" if status == 404 else "/api/v1/sources"
    response = await raw.request(method, path)
    assert response.status_code == status
    assert set(response.json()) == {"error", "message"}


# Faults


async def test_a_status_fault_answers_with_retry_after(
    sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """A 503 rule with retry_after reaches the client as SyncServerError with retry_after, once."""
    state.add_faults([FaultRule(operation="create_invocation", kind="status", status=503, retry_after=2)])
    with pytest.raises(SyncServerError) as caught:
        await _create(sync, source_id)
    assert (caught.value.status, caught.value.retry_after) == (503, 2.0)
    assert await _create(sync, source_id)
    assert len(state.invocations) == 1


async def test_a_status_without_a_reason_phrase_still_has_the_error_shape(
    raw: httpx.AsyncClient, state: EmulatorState
) -> None:
    """An unregistered status such as 499 answers with error "Error"."""
    state.add_faults([FaultRule(operation="list_sources", kind="status", status=499)])
    response = await raw.get("/api/v1/sources")
    assert (response.status_code, response.json()["error"]) == (499, "Error")


async def test_a_429_fault_is_rate_limited_with_an_http_date(
    sync: SyncClient, state: EmulatorState, raw: httpx.AsyncClient
) -> None:
    """A string retry_after is sent verbatim: an HTTP-date is honoured against the response's Date."""
    await raw.post(
        "/_emulator/faults",
        json={
            "operation": "list_sources",
            "kind": "status",
            "status": 429,
            "retry_after": "Thu, 01 Jan 2099 00:00:00 GMT",
        },
    )
    with pytest.raises(SyncRateLimited) as caught:
        await sync.list_sources()
    assert caught.value.retry_after == 3600.0


async def test_a_drop_fault_is_a_transport_error_and_does_nothing(
    sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """drop closes the connection before the operation: the client sees a transport error, nothing exists."""
    state.add_faults([FaultRule(operation="create_invocation", kind="drop")])
    with pytest.raises(SyncTransportError) as caught:
        await _create(sync, source_id, "dropped-coll")
    assert caught.value.outcome_unknown
    assert state.invocations == {}


async def test_drop_after_commit_creates_what_the_client_never_heard_of(
    sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """drop_after_commit creates the invocation, drops the answer, and find_invocation recovers it."""
    state.add_faults([FaultRule(operation="create_invocation", kind="drop_after_commit")])
    with pytest.raises(SyncTransportError) as caught:
        await _create(sync, source_id, "lost-answer")
    assert caught.value.outcome_unknown
    found = await sync.find_invocation(source_id, collection="lost-answer")
    assert found is not None
    assert list(state.invocations) == [found.id]


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_drops_work_under_both_uvicorn_http_implementations(http: str) -> None:
    """uvicorn's h11 and httptools both close the connection without an answer."""
    with run_emulator_in_thread(token=TOKEN, http=http) as (base_url, state):
        async with SyncClient(base_url=base_url, token=TOKEN) as sync:
            source_id = await sync.create_source(database_name="code", repository="acme/api")
            state.add_faults([FaultRule(operation="get_source", kind="drop", times=2)])
            for _ in range(2):
                with pytest.raises(SyncTransportError):
                    await sync.get_source(source_id)
            assert (await sync.get_source(source_id)).id == source_id


async def test_delay_after_commit_times_out_after_the_fact(
    base_url: str, source_id: str, state: EmulatorState
) -> None:
    """delay_after_commit creates, then answers late: a short client timeout sees an unknown outcome."""
    state.add_faults([FaultRule(operation="create_invocation", kind="delay_after_commit", seconds=0.5)])
    async with SyncClient(base_url=base_url, token=TOKEN, timeout=0.1) as sync:
        with pytest.raises(SyncTimeout) as caught:
            await _create(sync, source_id, "late-answer")
    assert caught.value.outcome_unknown
    assert [item.collection for item in state.invocations.values()] == ["late-answer"]


async def test_a_delay_fault_answers_late_but_normally(
    sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """delay waits before serving; the answer is the normal one."""
    state.add_faults([FaultRule(operation="get_source", kind="delay", seconds=0.3)])
    started = time.monotonic()
    assert (await sync.get_source(source_id)).id == source_id
    assert time.monotonic() - started >= 0.3


async def test_latency_applies_to_every_api_request(
    sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """latency_seconds is added to each API request."""
    state.configure(latency_seconds=0.2)
    started = time.monotonic()
    await sync.get_source(source_id)
    await sync.list_sources()
    assert time.monotonic() - started >= 0.4


async def test_a_wildcard_fault_that_never_runs_out(
    sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """operation "*" with times -1 hits every operation until the faults are cleared."""
    state.add_faults([FaultRule(operation="*", kind="status", status=500, times=-1)])
    for call in (sync.list_sources(), sync.get_source(source_id), sync.list_invocations()):
        with pytest.raises(SyncServerError):
            await call
    state.clear_faults()
    assert await sync.list_sources()


# Control API


async def test_faults_are_installed_and_cleared_over_http(
    raw: httpx.AsyncClient, sync: SyncClient, state: EmulatorState
) -> None:
    """POST /_emulator/faults takes a list of rules; DELETE removes them all."""
    rules = [
        {"operation": "list_sources", "kind": "status", "status": 429, "times": 3},
        {"operation": "get_invocation", "kind": "drop"},
    ]
    response = await raw.post("/_emulator/faults", json=rules)
    assert response.status_code == 200
    assert [rule["kind"] for rule in response.json()["faults"]] == ["status", "drop"]
    assert (await raw.delete("/_emulator/faults")).status_code == 204
    assert state.faults == []
    assert await sync.list_sources() == []


@pytest.mark.parametrize(
    "rule",
    [
        {"operation": "create_invocation", "kind": "explode"},
        {"operation": "make_coffee", "kind": "drop"},
        {"operation": "create_invocation", "kind": "status"},
        {"operation": "create_invocation", "kind": "status", "status": 200},
        {"operation": "create_invocation", "kind": "drop", "times": 0},
        {"operation": "create_invocation", "kind": "drop", "probability": 2},
        {"operation": "create_invocation", "kind": "drop", "time": 1},
    ],
)
async def test_an_invalid_fault_rule_is_a_bad_request(raw: httpx.AsyncClient, rule: dict[str, Any]) -> None:
    """Unknown kinds, operations or fields and out-of-range values answer 400."""
    response = await raw.post("/_emulator/faults", json=rule)
    assert response.status_code == 400


async def test_the_state_shows_invocations_counters_and_fired_faults(
    raw: httpx.AsyncClient, sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """GET /_emulator/state lists invocations (collection, sha, status), counters and fired faults."""
    state.add_faults([FaultRule(operation="create_invocation", kind="status", status=503)])
    with pytest.raises(SyncServerError):
        await _create(sync, source_id, "coll-s")
    invocation_id = await _create(sync, source_id, "coll-s")
    snapshot = (await raw.get("/_emulator/state")).json()
    assert snapshot["counters"] == {"create_source": 1, "create_invocation": 2}
    assert snapshot["faults_fired"] == {"create_invocation:status": 1}
    [invocation] = snapshot["invocations"]
    assert (invocation["id"], invocation["collection"], invocation["sha"], invocation["status"]) == (
        invocation_id,
        "coll-s",
        SHA,
        "pending",
    )
    assert [source["id"] for source in snapshot["sources"]] == [source_id]


async def test_the_control_api_needs_no_token(base_url: str, state: EmulatorState) -> None:
    """/_emulator/* is for tests and tools: no x-chroma-token."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/_emulator/state")).status_code == 200


async def test_configuration_changes_over_http(raw: httpx.AsyncClient, state: EmulatorState) -> None:
    """POST /_emulator/config changes the given knobs and returns the whole configuration."""
    response = await raw.post("/_emulator/config", json={"pending_seconds": 0.0, "create_status": 201})
    assert response.status_code == 200
    assert (response.json()["pending_seconds"], response.json()["create_status"]) == (0.0, 201)
    assert (state.config.pending_seconds, state.config.create_status) == (0.0, 201)


@pytest.mark.parametrize(
    "change",
    [
        {"pending_seconds": -1},
        {"create_status": 204},
        {"legacy_ids": "yes"},
        {"fail_ratio": 1.5},
        {"speed": 1},
    ],
)
async def test_an_invalid_configuration_is_a_bad_request(
    raw: httpx.AsyncClient, state: EmulatorState, change: dict[str, Any]
) -> None:
    """Out-of-range values and unknown keys answer 400 and change nothing."""
    response = await raw.post("/_emulator/config", json=change)
    assert response.status_code == 400
    assert state.config.pending_seconds == 1.0


async def test_reset_forgets_everything(
    raw: httpx.AsyncClient, sync: SyncClient, source_id: str, state: EmulatorState
) -> None:
    """POST /_emulator/reset empties sources, invocations and counters."""
    await _create(sync, source_id)
    assert (await raw.post("/_emulator/reset")).status_code == 204
    snapshot = state.snapshot()
    assert (snapshot["sources"], snapshot["invocations"], snapshot["counters"]) == ([], [], {})
