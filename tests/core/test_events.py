"""Parsing GitHub headers and push payloads, on the recorded payloads and on broken ones."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from bridge.core.errors import MalformedPayload, MissingHeader, UnsupportedContentType
from bridge.core.events import decode_body, parse_headers, parse_push
from tests.conftest import load_payload

HEADERS = {
    "x-github-event": "push",
    "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    "x-github-hook-id": "292430182",
    "x-hub-signature-256": "sha256=" + "0" * 64,
    "x-github-hook-installation-target-type": "integration",
    "x-github-hook-installation-target-id": "79929171",
}


def test_headers_are_read() -> None:
    """Event, delivery GUID, hook id, signature and target are extracted."""
    parsed = parse_headers(HEADERS)
    assert (parsed.event, parsed.delivery_id, parsed.hook_id) == (
        "push",
        HEADERS["x-github-delivery"],
        "292430182",
    )
    assert parsed.target_type == "integration"
    assert parsed.target_id == "79929171"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-github-event", None),
        ("x-github-event", "Push Event!"),
        ("x-github-delivery", None),
        ("x-github-delivery", "not a guid ✗"),
        ("x-github-hook-id", "abc"),
    ],
)
def test_missing_or_malformed_header_is_rejected(name: str, value: str | None) -> None:
    """A missing or malformed GitHub header is MissingHeader naming it."""
    headers = {k: v for k, v in HEADERS.items() if k != name}
    if value is not None:
        headers[name] = value
    with pytest.raises(MissingHeader, match="(?i)" + name.replace("x-github-", "X-GitHub-")):
        parse_headers(headers)


def test_missing_hook_id_dedupes_under_zero() -> None:
    """A hand-made request without a hook id is still accepted, under hook id 0."""
    headers = {k: v for k, v in HEADERS.items() if k != "x-github-hook-id"}
    assert parse_headers(headers).hook_id == "0"


def test_branch_push_from_a_github_app() -> None:
    """An ordinary push to a private repository's branch carries everything the bridge needs."""
    push = parse_push(load_payload("captured/probot/push.json"))
    assert push.branch is not None
    assert not push.is_tag
    assert not push.deleted
    assert len(push.after) == 40
    assert push.installation_id == 1729
    assert push.repository.full_name == "bkeepers-inc/test"


@pytest.mark.parametrize(
    "name",
    [
        "push/payload.json",
        "push/1.payload.json",
        "push/with-organization.payload.json",
        "push/with-installation.payload.json",
    ],
)
def test_tag_deletions_are_tags(name: str) -> None:
    """The published tag-deletion examples parse as deleted tag pushes."""
    push = parse_push(load_payload(name))
    assert push.is_tag
    assert push.branch is None
    assert push.deleted


def test_branch_deletion() -> None:
    """A real branch deletion has after = 40 zeros and deleted = true."""
    push = parse_push(load_payload("captured/githubkit/push.json"))
    assert push.deleted
    assert push.after == "0" * 40


@pytest.mark.parametrize(
    "name", ["push/with-new-branch.payload.json", "push/with-no-username-committer.payload.json"]
)
def test_branch_creation(name: str) -> None:
    """Branch creations have before = 40 zeros and created = true."""
    push = parse_push(load_payload(name))
    assert push.created
    assert push.before == "0" * 40
    assert push.branch is not None


def test_classic_repository_webhook_push() -> None:
    """A classic repository-webhook push (no installation) still parses."""
    push = parse_push(load_payload("captured/octokit-webhooks.js/push-payload.json"))
    assert push.installation_id is None
    assert push.branch is not None


def _mutate(path: list[str], value: Any) -> dict[str, Any]:
    payload = load_payload("captured/probot/push.json")
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["repository"], KeyError),
        (["repository"], "acme/api"),
        (["repository", "full_name"], 7),
        (["repository", "full_name"], "no-slash"),
        (["repository", "id"], "12"),
        (["repository", "id"], True),
        (["ref"], KeyError),
        (["ref"], "main"),
        (["after"], "abc"),
        (["before"], None),
        (["after"], "G" * 40),
    ],
)
def test_malformed_push_is_rejected(path: list[str], value: Any) -> None:
    """A push missing a needed field, or with the wrong type, is MalformedPayload."""
    with pytest.raises(MalformedPayload):
        parse_push(_mutate(path, value))


def test_json_and_form_bodies_decode_alike() -> None:
    """A form-encoded payload= body decodes to the same object as the JSON body."""
    payload = load_payload("captured/probot/push.json")
    raw = json.dumps(payload).encode()
    form = b"payload=" + quote(raw.decode()).encode()
    assert decode_body(raw, "application/json") == decode_body(form, "application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"payload=1&payload=2", "application/x-www-form-urlencoded"),
        (b"nothing=here", "application/x-www-form-urlencoded"),
        (b"payload", "application/x-www-form-urlencoded"),
        (b"payload=\xff", "application/x-www-form-urlencoded"),
        (b"[" * 100_000, "application/json"),
    ],
)
def test_bad_bodies_are_malformed(body: bytes, content_type: str) -> None:
    """Bodies that are not one JSON object are MalformedPayload."""
    with pytest.raises(MalformedPayload):
        decode_body(body, content_type)


def test_unsupported_content_type() -> None:
    """text/plain is refused as unsupported."""
    with pytest.raises(UnsupportedContentType):
        decode_body(b"{}", "text/plain")


@pytest.mark.parametrize(
    "bad", ["refs/heads/a\x00b", "refs/heads/tab\there", "refs/heads/\ud800", "refs/heads/del\x7f"]
)
def test_unstorable_ref_is_malformed(bad: str) -> None:
    """Control characters (which git forbids) and lone surrogates in a ref are MalformedPayload."""
    with pytest.raises(MalformedPayload):
        parse_push(_mutate(["ref"], bad))


def test_unicode_branch_is_fine() -> None:
    """Non-ASCII branch names git allows are accepted as they are."""
    assert parse_push(_mutate(["ref"], "refs/heads/fix/ünïcode-\u200b")).branch == "fix/ünïcode-\u200b"
