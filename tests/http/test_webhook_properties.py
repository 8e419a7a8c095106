"""Properties of POST /webhooks/github over generated requests, and every recorded GitHub payload.

Whatever arrives (any body, any headers, any signature, any payload shape) the ingress never answers 5xx,
stores nothing unless the signature is valid, stores exactly the routed jobs of a new push, and keeps
answering. One app and one SQLite file serve all examples of a test; store effects are measured per
example as differences of row counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from bridge.clients.sync import SyncClient
from bridge.core.errors import MalformedPayload
from bridge.core.events import parse_push
from bridge.core.intake import intake
from bridge.core.signature import sign
from bridge.http.app import create_app
from bridge.routes_file import parse_routes_text
from bridge.samples import ZERO, encode
from bridge.service import Service
from bridge.settings import Settings
from bridge.store.sqlite import SqliteStore
from tests.conftest import DATA, load_payload
from tests.http.conftest import ROUTES, SECRET, Ingress, signed_headers

pytestmark = pytest.mark.anyio

MAX_BODY = 4096
#: The shared routes, plus routes for the repositories of the recorded payloads.
ROUTED = (
    ROUTES
    + """
  - repository: Codertocat/Hello-World
    source_id: 5d6c1f0e-0000-4000-8000-000000000002
  - repository: baxterthehacker/public-repo
    branches: ["*"]
    source_id: 5d6c1f0e-0000-4000-8000-000000000003
  - repository: yanyongyu/githubkit
    branches: ["**"]
    source_id: 5d6c1f0e-0000-4000-8000-000000000004
"""
)
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- the app under test
@asynccontextmanager
async def serving(tmp_path: Path, settings: Settings) -> AsyncIterator[Ingress]:
    """The real app on a SQLite file, worker off, the recorded payloads' repositories routed too."""
    store = SqliteStore(tmp_path / "bridge.db")
    service = Service(
        settings=settings,
        routes=parse_routes_text(ROUTED),
        store=store,
        sync=SyncClient(base_url=settings.sync_url, token="token-for-tests"),
    )
    async with AsyncTestClient(app=create_app(service)) as client:
        yield Ingress(client=client, store=store, service=service)


@pytest.fixture
async def routed(tmp_path: Path, make_settings: Callable[..., Settings]) -> AsyncIterator[Ingress]:
    async with serving(tmp_path, make_settings()) as ingress:
        yield ingress


@pytest.fixture
async def capped(tmp_path: Path, make_settings: Callable[..., Settings]) -> AsyncIterator[Ingress]:
    """As ``routed``, with bodies over MAX_BODY bytes refused (so generated bodies reach the limit)."""
    async with serving(tmp_path, make_settings(max_body_bytes=MAX_BODY)) as ingress:
        yield ingress


def rows(ingress: Ingress) -> tuple[int, int]:
    """(deliveries, jobs) stored right now, read from the database file beside the service."""
    with contextlib.closing(sqlite3.connect(f"file:{ingress.store.path}?mode=ro", uri=True)) as db:
        deliveries = db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    return int(deliveries), int(jobs)


def delivery_stored(ingress: Ingress, hook: str, delivery: str) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{ingress.store.path}?mode=ro", uri=True)) as db:
        query = "SELECT 1 FROM deliveries WHERE hook_id = ? AND delivery_id = ?"
        return db.execute(query, (hook, delivery)).fetchone() is not None


async def still_answers(ingress: Ingress) -> None:
    """The app is alive and its store answers."""
    assert (await ingress.client.get("/readyz")).status_code == 200


def expected_jobs(ingress: Ingress, payload: dict[str, Any]) -> int | str:
    """How many jobs the push creates, or the reason it is ignored (the pure core decides)."""
    decided = intake(parse_push(payload), ingress.service.routes, received_at=0.0)
    return decided.ignored if decided.ignored is not None else len(decided.jobs)


# --------------------------------------------------------------------------- strategies
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=70)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
HEX40 = st.text("0123456789abcdef", min_size=40, max_size=40)
REPOSITORIES = st.sampled_from(
    ["acme/api", "acme/web", "ACME/Api", "bkeepers-inc/test", "bkeepers-inc/test", "nobody/else"]
)
#: Branch names: routed ones, odd ones and any text git allows (no control characters; lone surrogates
#: and control characters are refused as malformed, see test_a_lone_surrogate_in_a_signed_ref_is_400_not_500).
BRANCHES = st.one_of(
    st.sampled_from(["main", "release/1.2", "release/1/2", "feature/x", "a" * 300]),
    st.sampled_from(["main", "release/1.2"]),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40),
)
JSON_MEDIA = ["application/json", "application/json; charset=utf-8", "application/vnd.github+json"]
FORM_MEDIA = "application/x-www-form-urlencoded"


@st.composite
def valid_pushes(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed push payload: any branch, routed or not; now and then a tag or a branch deletion."""
    kind = draw(st.sampled_from(["branch"] * 6 + ["tag", "deletion"]))
    ref = "refs/tags/v1.0" if kind == "tag" else f"refs/heads/{draw(BRANCHES)}"
    payload: dict[str, Any] = {
        "ref": ref,
        "before": draw(st.one_of(st.just(ZERO), HEX40)),
        "after": ZERO if kind == "deletion" else draw(HEX40),
        "created": draw(st.booleans()),
        "deleted": kind == "deletion",
        "forced": draw(st.booleans()),
        "repository": {
            "id": draw(st.integers(min_value=1, max_value=2**40)),
            "full_name": draw(REPOSITORIES),
            "default_branch": draw(st.sampled_from(["main", "master", "develop"])),
            "pushed_at": draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**33))),
            "private": draw(st.booleans()),
        },
        "commits": [],
        "head_commit": None,
    }
    if draw(st.booleans()):
        payload["installation"] = {"id": draw(st.integers(min_value=1, max_value=2**40))}
    return payload


MUTATIONS = ["drop", "retype", "drop_repo_field", "retype_repo_field", "repository", "extra", "ref_text"]


@st.composite
def push_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid push with zero to three mutations: keys dropped, values of any JSON type, garbage added."""
    payload = draw(valid_pushes())
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        repo = payload.get("repository")
        if mutation == "drop" and payload:
            del payload[draw(st.sampled_from(sorted(payload)))]
        elif mutation == "retype" and payload:
            payload[draw(st.sampled_from(sorted(payload)))] = draw(JSON_VALUES)
        elif mutation == "drop_repo_field" and isinstance(repo, dict) and repo:
            del repo[draw(st.sampled_from(sorted(repo)))]
        elif mutation == "retype_repo_field" and isinstance(repo, dict) and repo:
            repo[draw(st.sampled_from(sorted(repo)))] = draw(st.one_of(JSON_VALUES, st.text(max_size=30)))
        elif mutation == "repository":
            payload["repository"] = draw(JSON_VALUES)
        elif mutation == "extra":
            payload.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, min_size=1, max_size=3)))
        elif mutation == "ref_text":
            payload["ref"] = draw(st.text(max_size=30))
    return payload


def form_encoded(body: bytes) -> bytes:
    return b"payload=" + quote(body.decode("utf-8", "replace")).encode()


#: (body, content type the body is meant for)
BODIES = st.one_of(
    push_like().map(lambda p: (encode(p), "json")),
    push_like().map(lambda p: (encode(p), "json")),
    push_like().map(lambda p: (form_encoded(encode(p)), "form")),
    st.binary(max_size=300).map(lambda b: (b, "json")),
    JSON_VALUES.map(lambda v: (json.dumps(v).encode(), "json")),
    st.text(max_size=200).map(lambda t: (t.encode(), "json")),
    st.integers(min_value=MAX_BODY - 2, max_value=2 * MAX_BODY).map(
        lambda n: (b"{" + b" " * n + b"}", "json")
    ),
)


@st.composite
def signatures(draw: st.DrawFn, body: bytes) -> tuple[bool, dict[str, str]]:
    """(valid, signature headers): valid half the time, else absent, empty, wrong, SHA-1, garbage..."""
    valid = sign(body, SECRET.encode())
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    invalid = {
        "absent": None,
        "empty": "",
        "wrong_body": sign(body + b" ", SECRET.encode()),
        "wrong_secret": sign(body, b"another-secret"),
        "sha1_only": None,
        "sha1_as_256": sha1,
        "upper_hex": "sha256=" + valid.removeprefix("sha256=").upper(),
        "truncated": valid[:-1],
        "bare_hex": valid.removeprefix("sha256="),
        "garbage": draw(HEADER_TEXT),
    }
    kind = "valid" if draw(st.booleans()) else draw(st.sampled_from(sorted(invalid)))
    value = valid if kind == "valid" else invalid[kind]
    headers = {} if value is None else {"X-Hub-Signature-256": value}
    if kind == "sha1_only" or draw(st.booleans()):
        headers["X-Hub-Signature"] = sha1
    return kind == "valid", headers


@st.composite
def github_headers(draw: st.DrawFn, media: str) -> dict[str, str]:
    """X-GitHub-* and Content-Type headers: all right half the time, else each right, absent or garbage."""
    content_type = FORM_MEDIA if media == "form" else draw(st.sampled_from(JSON_MEDIA))
    good = {
        "X-GitHub-Event": st.sampled_from(["push", "push", "push", "ping", "installation"]),
        "X-GitHub-Delivery": st.one_of(st.uuids().map(str), st.sampled_from(["d-1", "d-2"])),
        "X-GitHub-Hook-ID": st.integers(min_value=0, max_value=10**22).map(str),
        "Content-Type": st.one_of(st.just(content_type), st.sampled_from(["text/plain", FORM_MEDIA])),
    }
    all_good = draw(st.booleans())
    headers = {}
    for name, strategy in good.items():
        value = draw(strategy if all_good else st.one_of(strategy, st.none(), st.just(""), HEADER_TEXT))
        if value is not None:
            headers[name] = value
    return headers


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str], bool]:
    """(body, headers, whether the signature is valid); drawn before the test runs, outside its loop."""
    body, media = draw(BODIES)
    valid, signature = draw(signatures(body))
    return body, draw(github_headers(media)) | signature, valid


# --------------------------------------------------------------------------- properties
@PROPERTY
@given(request=requests())
async def test_any_request_gets_a_json_4xx_or_2xx_and_is_stored_only_when_signed(
    capped: Ingress, request: tuple[bytes, dict[str, str], bool]
) -> None:
    """Random bodies, headers and signatures: never 5xx; 413 or 401 unless signed; unsigned stores nothing."""
    body, headers, valid = request
    before = rows(capped)
    response = await capped.post(body, headers)
    stored = tuple(after - was for after, was in zip(rows(capped), before, strict=True))
    assert response.status_code < 500, response.text
    answer = response.json()
    event(f"{response.status_code} {answer.get('status') or answer.get('error')}")
    if len(body) > MAX_BODY:
        assert (response.status_code, answer["error"]) == (413, "payload_too_large")
    elif not valid:
        assert response.status_code == 401
        assert answer["error"] in ("signature_missing", "signature_mismatch")
    if response.status_code == 202 and answer["status"] == "accepted":
        assert stored[0] == 1
        assert stored[1] == len(answer["jobs"]) > 0
    else:
        assert stored == (0, 0)
    await still_answers(capped)


@PROPERTY
@given(payload=push_like(), guid=st.one_of(st.uuids().map(str), st.uuids().map(str), st.just("d-1")))
async def test_signed_push_shapes_are_202_or_400_and_store_exactly_the_routed_jobs(
    routed: Ingress, payload: dict[str, Any], guid: str
) -> None:
    """Signed JSON objects of any push-like shape: 400 malformed, or 202 with exactly intake's jobs."""
    body = encode(payload)
    already = delivery_stored(routed, "1", guid)
    before = rows(routed)
    response = await routed.post(body, signed_headers(body, delivery=guid))
    stored = tuple(after - was for after, was in zip(rows(routed), before, strict=True))
    answer = response.json()
    event(f"{response.status_code} {answer.get('status') or answer.get('error')}")
    try:
        expected: int | str | None = expected_jobs(routed, payload)
    except MalformedPayload:
        expected = None
    if expected is None:
        assert (response.status_code, answer["error"]) == (400, "malformed_payload")
        assert stored == (0, 0)
    elif isinstance(expected, str):
        assert (response.status_code, answer["status"], answer["reason"]) == (202, "ignored", expected)
        assert stored == (0, 0)
    elif already:
        assert (response.status_code, answer["status"]) == (202, "duplicate")
        assert stored == (0, 0)
    else:
        assert (response.status_code, answer["status"]) == (202, "accepted")
        assert stored == (1, expected)
    await still_answers(routed)


@PROPERTY
@given(
    payload=valid_pushes(),
    guid=st.one_of(
        st.uuids().map(str), st.uuids().map(str), st.uuids().map(str), st.sampled_from(["d-1", "d-2"])
    ),
    hook=st.sampled_from(["1", "2"]),
    encoding=st.sampled_from(["ascii", "utf-8", "form"]),
)
async def test_every_valid_signed_push_is_202_and_stores_jobs_only_when_routed(
    routed: Ingress, payload: dict[str, Any], guid: str, hook: str, encoding: str
) -> None:
    """Well-formed signed pushes always get 202: accepted (jobs stored), ignored or duplicate (nothing)."""
    text = json.dumps(payload, ensure_ascii=encoding == "ascii")  # \u escapes, or raw UTF-8 as GitHub sends
    body = form_encoded(text.encode()) if encoding == "form" else text.encode()
    content_type = FORM_MEDIA if encoding == "form" else "application/json"
    expected = expected_jobs(routed, payload)
    already = delivery_stored(routed, hook, guid)
    before = rows(routed)
    response = await routed.post(
        body, signed_headers(body, delivery=guid, hook=hook, content_type=content_type)
    )
    stored = tuple(after - was for after, was in zip(rows(routed), before, strict=True))
    assert response.status_code == 202, response.text
    answer = response.json()
    event(f"{answer['status']} {answer['reason']}")
    assert answer["delivery_id"] == guid
    if isinstance(expected, str):
        assert (answer["status"], answer["reason"]) == ("ignored", expected)
        assert stored == (0, 0)
    elif already:
        assert (answer["status"], answer["reason"]) == ("duplicate", "redelivery")
        assert stored == (0, 0)
    else:
        assert answer["status"] == "accepted"
        assert stored == (1, expected) == (1, len(answer["jobs"]))
    await still_answers(routed)


# --------------------------------------------------------------------------- recorded payloads
@pytest.mark.parametrize(
    ("name", "before"),
    [
        ("captured/probot/push.json", "f5cd8548"),
        ("captured/octokit-webhooks.js/push-payload.json", "9049f126"),
        ("push/with-new-branch.payload.json", ZERO[:8]),
        ("push/with-no-username-committer.payload.json", ZERO[:8]),
    ],
)
async def test_recorded_branch_pushes_to_routed_repositories_are_accepted(
    routed: Ingress, name: str, before: str
) -> None:
    """Real branch pushes (App, classic repository webhook, new branch, no-username committer) are jobs."""
    payload = load_payload(name)
    body = encode(payload)
    response = await routed.post(body, signed_headers(body))
    assert (response.status_code, response.json()["status"]) == (202, "accepted")
    [job] = await routed.store.list_jobs()
    assert (job.repository, job.after, job.before[:8]) == (
        payload["repository"]["full_name"],
        payload["after"],
        before,
    )
    assert job.branch == payload["ref"].removeprefix("refs/heads/")


async def test_a_new_branch_push_is_stored_with_a_zero_before(routed: Ingress) -> None:
    """A branch creation (before = 40 zeros) on a routed repository's default branch is accepted as such."""
    body = encode(load_payload("push/with-new-branch.payload.json"))
    assert (await routed.post(body, signed_headers(body))).json()["status"] == "accepted"
    [job] = await routed.store.list_jobs()
    assert (job.before, job.branch) == (ZERO, "master")


async def test_a_classic_form_encoded_push_is_accepted(routed: Ingress) -> None:
    """The classic repository webhook push, form-encoded as old hooks send it, is accepted."""
    body = form_encoded(encode(load_payload("captured/octokit-webhooks.js/push-payload.json")))
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    assert (await routed.post(body, headers)).json()["status"] == "accepted"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("push/payload.json", "tag"),
        ("push/1.payload.json", "tag"),
        ("push/with-installation.payload.json", "tag"),
        ("push/with-organization.payload.json", "tag"),
        ("captured/githubkit/push.json", "branch_deleted"),
    ],
)
async def test_recorded_tag_and_branch_deletions_are_ignored_even_when_routed(
    routed: Ingress, name: str, reason: str
) -> None:
    """Tag deletions and a branch deletion on routed repositories are 202 ignored and store nothing."""
    body = encode(load_payload(name))
    response = await routed.post(body, signed_headers(body))
    assert (response.status_code, response.json()["status"], response.json()["reason"]) == (
        202,
        "ignored",
        reason,
    )
    assert rows(routed) == (0, 0)


@pytest.mark.parametrize("name", ["ping/payload.json", "ping/with-app_id.payload.json"])
async def test_recorded_pings_answer_pong(routed: Ingress, name: str) -> None:
    """Repository and App pings answer 200 pong and store nothing."""
    body = encode(load_payload(name))
    response = await routed.post(body, signed_headers(body, event="ping"))
    assert (response.status_code, response.json()["status"]) == (200, "pong")
    assert rows(routed) == (0, 0)


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("installation/created.payload.json", "installation"),
        ("installation_repositories/added.payload.json", "installation_repositories"),
    ],
)
async def test_recorded_app_events_are_acknowledged_and_ignored(
    routed: Ingress, name: str, event: str
) -> None:
    """Installation events are 202 ignored (event_not_handled) and store nothing."""
    body = encode(load_payload(name))
    response = await routed.post(body, signed_headers(body, event=event))
    assert (response.status_code, response.json()["reason"]) == (202, "event_not_handled")
    assert rows(routed) == (0, 0)


def test_every_recorded_payload_is_covered() -> None:
    """Each payload file under tests/data/github is exercised by a test of this module."""
    names = {str(p.relative_to(DATA / "github")) for p in (DATA / "github").rglob("*.json")}
    source = Path(__file__).read_text()
    assert {name for name in names if f'"{name}"' not in source} == set()


async def test_a_recorded_push_signed_with_another_secret_stores_nothing(routed: Ingress) -> None:
    """A real payload with a signature under the wrong secret is 401 and leaves the store empty."""
    body = encode(load_payload("captured/probot/push.json"))
    headers = signed_headers(body, secret="not-the-secret", delivery=str(uuid.uuid4()))
    response = await routed.post(body, headers)
    assert (response.status_code, response.json()["error"]) == (401, "signature_mismatch")
    assert rows(routed) == (0, 0)


@pytest.mark.parametrize("field", ["ref", "full_name"])
async def test_a_lone_surrogate_in_a_signed_ref_is_400_not_500(routed: Ingress, field: str) -> None:
    """A signed push whose ref or repository name holds a lone surrogate is 400, not a 500."""
    payload = load_payload("captured/probot/push.json")
    if field == "ref":
        payload["ref"] = "refs/heads/\ud800"
    else:
        payload["repository"]["full_name"] = "bkeepers-inc/test\ud800"
    body = json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as the escape \ud800
    response = await routed.post(body, signed_headers(body))
    assert (response.status_code, response.json()["error"]) == (400, "malformed_payload")
    assert rows(routed) == (0, 0)
