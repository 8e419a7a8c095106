"""POST /webhooks/github: verify, parse, route, persist, acknowledge."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from bridge.clients.sync import SyncClient
from bridge.core.errors import PayloadTooLarge
from bridge.core.jobs import JobState
from bridge.http.app import Ingress as IngressApp
from bridge.http.app import create_app, create_litestar
from bridge.http.webhooks import read_body
from bridge.ipc import ChannelClosed
from bridge.routes_file import parse_routes_text
from bridge.samples import encode, push_payload
from bridge.service import Service
from bridge.settings import Settings
from bridge.store.sqlite import SqliteStore
from tests.conftest import load_payload
from tests.factories import sha
from tests.fakes import MemoryStore
from tests.http.conftest import ROUTES, SECRET, Ingress, signed_headers

pytestmark = pytest.mark.anyio

PUSH = encode(load_payload("captured/probot/push.json"))


async def stored_jobs(ingress: Ingress) -> int:
    return sum((await ingress.store.counts()).values())


async def test_push_is_accepted_and_stored(ingress: Ingress) -> None:
    """A signed, routed push answers 202 accepted and its job is in the store."""
    response = await ingress.post(PUSH, signed_headers(PUSH, delivery="d-1"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert body["delivery_id"] == "d-1"
    jobs = await ingress.store.list_jobs()
    assert [(j.state, j.repository, j.after) for j in jobs] == [
        (JobState.QUEUED, "bkeepers-inc/test", load_payload("captured/probot/push.json")["after"])
    ]


async def test_the_webhook_answers_the_same_past_litestar_and_through_it(ingress: Ingress) -> None:
    """``/webhooks/github`` skips Litestar (``Ingress``); a path only Litestar's router normalises to it
    (a trailing slash) reaches the same handler through Litestar's route table, as do other routes."""
    litestar = create_litestar(ingress.service)
    routed: list[str] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await litestar(scope, receive, send)

    app = IngressApp(cast(Any, counting), ingress.service)
    # No lifespan here: the fixture's client started the service already.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        direct = await client.post(
            "/webhooks/github", content=PUSH, headers=signed_headers(PUSH, delivery="d-direct")
        )
        assert routed == []
        through = await client.post(
            "/webhooks/github/", content=PUSH, headers=signed_headers(PUSH, delivery="d-routed")
        )
        assert routed == ["/webhooks/github/"]
        health = await client.get("/healthz")
    assert (direct.status_code, through.status_code, health.status_code) == (202, 202, 200)
    assert routed[-1] == "/healthz"
    assert [direct.json()["status"], through.json()["status"]] == ["accepted", "accepted"]
    assert {j.delivery_id for j in await ingress.store.list_jobs()} == {"d-direct", "d-routed"}


async def test_every_matching_route_gets_a_job(ingress: Ingress) -> None:
    """A push matching two routes stores two jobs in two lanes."""
    body = encode(push_payload(repository="acme/api", branch="main", after=sha(1)))
    response = await ingress.post(body, signed_headers(body))
    assert response.status_code == 202
    assert len(response.json()["jobs"]) == 2
    assert len({j.lane for j in await ingress.store.list_jobs()}) == 2


async def test_redelivery_is_recognised_and_stores_nothing(ingress: Ingress) -> None:
    """The same hook id and delivery GUID again answers duplicate and adds no job."""
    await ingress.post(PUSH, signed_headers(PUSH, delivery="d-1"))
    again = await ingress.post(PUSH, signed_headers(PUSH, delivery="d-1"))
    assert again.status_code == 202
    assert again.json()["status"] == "duplicate"
    assert await stored_jobs(ingress) == 1


async def test_same_guid_on_another_hook_is_a_separate_delivery(ingress: Ingress) -> None:
    """Dedupe is on hook id and GUID together: another hook's copy is accepted."""
    await ingress.post(PUSH, signed_headers(PUSH, delivery="d-1", hook="1"))
    other = await ingress.post(PUSH, signed_headers(PUSH, delivery="d-1", hook="2"))
    assert other.json()["status"] == "accepted"


async def test_ping_answers_200(ingress: Ingress) -> None:
    """A signed ping is answered 200 and stores nothing."""
    body = encode(load_payload("ping/with-app_id.payload.json"))
    response = await ingress.post(body, signed_headers(body, event="ping"))
    assert response.status_code == 200
    assert await stored_jobs(ingress) == 0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("push/payload.json", "tag"),
        ("push/with-installation.payload.json", "tag"),
        ("captured/githubkit/push.json", "branch_deleted"),
        ("captured/octokit-webhooks.js/push-payload.json", "no_route"),
        ("push/with-new-branch.payload.json", "no_route"),
    ],
)
async def test_pushes_that_index_nothing_are_ignored(ingress: Ingress, name: str, reason: str) -> None:
    """Tags, branch deletions and unrouted pushes answer 202 ignored and store nothing."""
    body = encode(load_payload(name))
    response = await ingress.post(body, signed_headers(body))
    assert response.status_code == 202
    assert response.json() | {"delivery_id": None} == {
        "status": "ignored",
        "reason": reason,
        "delivery_id": None,
    }
    assert await stored_jobs(ingress) == 0


async def test_other_events_are_ignored(ingress: Ingress) -> None:
    """An installation event is acknowledged and stores nothing."""
    body = encode(load_payload("installation/created.payload.json"))
    response = await ingress.post(body, signed_headers(body, event="installation"))
    assert response.json()["reason"] == "event_not_handled"


async def test_form_encoded_push_is_accepted(ingress: Ingress) -> None:
    """A classic form-encoded delivery (payload=...) is verified over its raw bytes and accepted."""
    body = b"payload=" + quote(PUSH.decode()).encode()
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    assert (await ingress.post(body, headers)).json()["status"] == "accepted"


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda h: _without(h, "X-Hub-Signature-256"), 401, "signature_missing"),
        (lambda h: h | {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, "signature_mismatch"),
        (
            lambda h: _without(h, "X-Hub-Signature-256") | {"X-Hub-Signature": "sha1=" + "0" * 40},
            401,
            "signature_missing",
        ),
        (lambda h: _without(h, "X-GitHub-Event"), 400, "missing_header"),
        (lambda h: _without(h, "X-GitHub-Delivery"), 400, "missing_header"),
        (lambda h: h | {"Content-Type": "text/plain"}, 415, "unsupported_media"),
    ],
)
async def test_bad_requests_get_a_json_4xx_and_store_nothing(
    ingress: Ingress, mutate: Callable[[dict[str, str]], dict[str, str]], status: int, reason: str
) -> None:
    """Missing or wrong signatures are 401, missing headers 400; the body says why; nothing is stored."""
    with capture_logs() as logs:
        response = await ingress.post(PUSH, mutate(signed_headers(PUSH)))
    assert response.status_code == status
    assert response.json()["error"] == reason
    assert await stored_jobs(ingress) == 0
    assert any(e["event"] == "delivery.rejected" and e["reason"] == reason for e in logs)


@pytest.mark.parametrize("body", [b"{not json", b"[]", json.dumps({"ref": "refs/heads/main"}).encode()])
async def test_malformed_signed_body_is_400(ingress: Ingress, body: bytes) -> None:
    """A correctly signed body that is not a push payload is 400 malformed_payload."""
    response = await ingress.post(body, signed_headers(body))
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_payload"


async def test_secret_never_reaches_logs_or_answers(ingress: Ingress) -> None:
    """Neither the webhook secret nor the token appears in any log event or answer."""
    with capture_logs() as logs:
        bad = await ingress.post(PUSH, signed_headers(PUSH, secret="wrong"))
        good = await ingress.post(PUSH, signed_headers(PUSH))
    text = json.dumps(logs, default=str) + bad.text + good.text
    assert SECRET not in text
    assert "token-for-tests" not in text


async def test_rotation_accepts_both_secrets(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    """With two comma-separated secrets, deliveries signed with either are accepted."""
    settings = make_settings(webhook_secret=f"new-secret,{SECRET}")
    service = Service(
        settings=settings,
        routes=parse_routes_text(ROUTES),
        store=SqliteStore(tmp_path / "b.db"),
        sync=SyncClient(base_url=settings.sync_url, token="t"),
    )
    async with AsyncTestClient(app=create_app(service)) as client:
        for secret in ("new-secret", SECRET):
            headers = signed_headers(PUSH, secret=secret)
            response = await client.post("/webhooks/github", content=PUSH, headers=headers)
            assert response.json()["status"] == "accepted"


async def test_body_over_the_limit_is_413(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    """A body larger than BRIDGE_MAX_BODY_BYTES is refused with 413 and a JSON body."""
    settings = make_settings(max_body_bytes=1024)
    service = Service(
        settings=settings,
        routes=parse_routes_text(ROUTES),
        store=SqliteStore(tmp_path / "b.db"),
        sync=SyncClient(base_url=settings.sync_url, token="t"),
    )
    async with AsyncTestClient(app=create_app(service)) as client:
        response = await client.post("/webhooks/github", content=PUSH, headers=signed_headers(PUSH))
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert sum((await service.store.counts()).values()) == 0


async def test_health_and_readiness(ingress: Ingress) -> None:
    """healthz answers 200; readyz reports the store."""
    assert (await ingress.client.get("/healthz")).status_code == 200
    ready = await ingress.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] == "ok"


async def test_metrics_count_deliveries(ingress: Ingress) -> None:
    """The metrics endpoint counts accepted and rejected deliveries by reason."""
    await ingress.post(PUSH, signed_headers(PUSH))
    await ingress.post(PUSH, signed_headers(PUSH, secret="wrong"))
    text = (await ingress.client.get("/metrics")).text
    assert 'bridge_deliveries_total{outcome="accepted",reason="routed"} 1.0' in text
    assert 'bridge_deliveries_total{outcome="rejected",reason="signature_mismatch"} 1.0' in text
    assert 'bridge_jobs{state="queued"} 1.0' in text
    # This service writes its SQLite file itself (no worker process): it counts the commits.
    (commits,) = [line for line in text.splitlines() if line.startswith("bridge_store_commit_seconds_count ")]
    assert float(commits.split()[-1]) >= 1


async def test_unknown_path_is_json_404(ingress: Ingress) -> None:
    """Unknown paths answer a JSON 404."""
    response = await ingress.client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_readyz_is_503_when_the_store_does_not_answer(make_settings: Callable[..., Settings]) -> None:
    """A store that fails its ping makes readyz answer 503 and name the store."""
    store = MemoryStore()
    settings = make_settings()
    service = Service(
        settings=settings,
        routes=parse_routes_text(ROUTES),
        store=store,
        sync=SyncClient(base_url=settings.sync_url, token="t"),
    )
    async with AsyncTestClient(app=create_app(service)) as client:
        store.ping_error = ConnectionError("database is gone")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"].startswith("unavailable")
        assert (await client.get("/healthz")).status_code == 200


async def test_accepted_delivery_is_logged_with_its_fields(ingress: Ingress) -> None:
    """delivery.accepted names the delivery, repository, branch and commit, at debug (a routine outcome;
    tests/e2e/test_serve.py checks that the default level writes no such line)."""
    with capture_logs() as logs:
        await ingress.post(PUSH, signed_headers(PUSH, delivery="d-logged"))
    [event] = [e for e in logs if e["event"] == "delivery.accepted"]
    assert event["log_level"] == "debug"
    payload = load_payload("captured/probot/push.json")
    assert (event["delivery_id"], event["repository"], event["sha"]) == (
        "d-logged",
        "bkeepers-inc/test",
        payload["after"],
    )
    assert event["branch"] == payload["ref"].removeprefix("refs/heads/")


async def test_every_routine_outcome_is_logged_at_debug_and_a_rejection_as_a_warning(
    ingress: Ingress,
) -> None:
    """Accepted, duplicate, ignored (another event; an unrouted push): debug lines; a bad signature:
    a warning (the line the default level keeps)."""
    unrouted = load_payload("captured/octokit-webhooks.js/push-payload.json")
    other = encode(unrouted)
    with capture_logs() as logs:
        await ingress.post(PUSH, signed_headers(PUSH, delivery="d-routine"))
        await ingress.post(PUSH, signed_headers(PUSH, delivery="d-routine"))
        await ingress.post(other, signed_headers(other, event="installation"))
        await ingress.post(other, signed_headers(other))
        await ingress.post(PUSH, signed_headers(PUSH, secret="wrong"))
    levels = [
        (e["event"], e.get("reason"), e["log_level"]) for e in logs if e["event"].startswith("delivery.")
    ]
    assert levels == [
        ("delivery.accepted", None, "debug"),
        ("delivery.duplicate", None, "debug"),
        ("delivery.ignored", None, "debug"),
        ("delivery.ignored", "no_route", "debug"),
        ("delivery.rejected", "signature_mismatch", "warning"),
    ]


async def test_a_push_that_replaces_queued_ones_logs_and_counts_them(ingress: Ingress) -> None:
    """A push on top of a queued one replaces it on arrival: the accept log line names the replaced
    job ids, and bridge_jobs_superseded_on_arrival_total counts them (two routes match: two lanes)."""
    first = encode(push_payload(repository="acme/api", before=sha(0), after=sha(1), pushed_at=10))
    second = encode(push_payload(repository="acme/api", before=sha(1), after=sha(2), pushed_at=11))
    assert (await ingress.post(first, signed_headers(first, delivery="d-1"))).status_code == 202
    replaced = sorted(job.id for job in await ingress.store.list_jobs())
    with capture_logs() as logs:
        response = await ingress.post(second, signed_headers(second, delivery="d-2"))
    assert response.status_code == 202
    [event] = [e for e in logs if e["event"] == "delivery.accepted"]
    assert list(event["superseded"]) == replaced
    states = {job.after: job.state for job in await ingress.store.list_jobs()}
    assert states == {sha(1): JobState.SUPERSEDED, sha(2): JobState.QUEUED}
    text = (await ingress.client.get("/metrics")).text
    assert "bridge_jobs_superseded_on_arrival_total 2.0" in text


# --- what Litestar would do for a @post handler, done by hand in the raw ASGI webhook ------------------


async def test_other_methods_get_a_json_405_with_allow(ingress: Ingress) -> None:
    """GET (or anything but POST) on the webhook is 405, names POST in Allow, and stores nothing."""
    response = await ingress.client.get("/webhooks/github")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"
    assert await stored_jobs(ingress) == 0


async def test_streamed_body_is_counted_against_the_limit() -> None:
    """Without Content-Length, the body is counted while it arrives and refused once over the limit."""

    def receiver(size: int, chunk: int = 512) -> Callable[[], Awaitable[dict[str, object]]]:
        body = b"x" * size
        parts = [body[start : start + chunk] for start in range(0, size, chunk)] or [b""]
        messages = iter(
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        )

        async def receive() -> dict[str, object]:
            return next(messages)

        return receive

    assert await read_body(receiver(1024), {}, 1024) == b"x" * 1024  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        await read_body(receiver(1025), {}, 1024)  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):  # refused from the header, before reading
        await read_body(receiver(10), {"content-length": "2048"}, 1024)  # type: ignore[arg-type]


async def post_with_failing_accept(
    make_settings: Callable[..., Settings], error: Exception
) -> tuple[Any, list[dict[str, Any]]]:
    """POST a valid push to an app whose store's ``accept`` raises ``error``; the answer and the logs."""
    store = MemoryStore()
    settings = make_settings()
    service = Service(
        settings=settings,
        routes=parse_routes_text(ROUTES),
        store=store,
        sync=SyncClient(base_url=settings.sync_url, token="t"),
    )

    async def failing(*_: object) -> bool:
        raise error

    store.accept = failing  # type: ignore[method-assign]
    async with AsyncTestClient(app=create_app(service)) as client:
        with capture_logs() as logs:
            response = await client.post("/webhooks/github", content=PUSH, headers=signed_headers(PUSH))
    return response, logs


async def test_store_failure_is_a_json_500_and_logged(make_settings: Callable[..., Settings]) -> None:
    """If the store cannot commit, the answer is a JSON 500 (never a 202) and the error is logged."""
    response, logs = await post_with_failing_accept(make_settings, OSError("disk I/O error"))
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "The bridge failed to handle this request.",
    }
    assert any(e["event"] == "http.internal_error" and e["error_type"] == "OSError" for e in logs)


async def test_client_gone_before_its_body_stores_nothing(ingress: Ingress) -> None:
    """A client that disconnects mid-body gets no answer, and nothing is stored."""
    app = ingress.client.app
    headers = [(k.lower().encode(), v.encode()) for k, v in signed_headers(PUSH).items()]
    messages = iter(
        [
            {"type": "http.request", "body": PUSH[:100], "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[object] = []

    async def receive() -> object:
        return next(messages)

    async def send(message: object) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/github",
        "raw_path": b"/webhooks/github",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    with capture_logs() as logs:
        await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent == []
    assert any(e["event"] == "delivery.client_gone" for e in logs)
    assert await stored_jobs(ingress) == 0


async def test_store_down_is_a_json_503_and_logged(make_settings: Callable[..., Settings]) -> None:
    """A store that is closed or unreachable (the worker process restarting) gives 503, never a 202."""
    response, logs = await post_with_failing_accept(
        make_settings, ChannelClosed("the worker process is gone")
    )
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert any(e["event"] == "delivery.store_unavailable" for e in logs)
