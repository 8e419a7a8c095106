"""``decode_push`` (msgspec, needed fields only) answers exactly as ``parse_push(decode_body(...))``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.errors import DeliveryRejected
from bridge.core.events import decode_body, decode_push, parse_push
from bridge.samples import encode, push_payload

JSON = "application/json"
FIELDS = ["ref", "before", "after", "created", "deleted", "forced", "installation", "repository"]
REPO_FIELDS = ["id", "full_name", "default_branch", "master_branch", "private", "pushed_at"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["refs/heads/main", "refs/tags/v1", "a" * 40, "0" * 40, "acme/api", "main"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except DeliveryRejected as exc:
        return (type(exc).__name__, exc.message)


def same(body: bytes, content_type: str | None = JSON) -> None:
    standard = outcome(lambda: parse_push(decode_body(body, content_type)))
    assert outcome(lambda: decode_push(body, content_type)) == standard


@settings(max_examples=300, deadline=None)
@given(
    top=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
    repo=st.dictionaries(st.sampled_from(REPO_FIELDS), json_values, max_size=3),
    drop=st.lists(st.sampled_from(FIELDS + [f"repository.{f}" for f in REPO_FIELDS]), max_size=2),
    ensure_ascii=st.booleans(),
)
def test_any_field_values_give_the_same_answer(
    top: dict[str, Any], repo: dict[str, Any], drop: list[str], ensure_ascii: bool
) -> None:
    payload = push_payload(repository="acme/api", commits=2)
    payload["repository"].update(repo)
    payload.update(top)
    for name in drop:
        if name.startswith("repository.") and isinstance(payload.get("repository"), dict):
            payload["repository"].pop(name.split(".", 1)[1], None)
        else:
            payload.pop(name, None)
    same(json.dumps(payload, ensure_ascii=ensure_ascii).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"null",
        b'"push"',
        b"{",
        b'{"ref": "refs/heads/main"} trailing',
        b'{"ref": NaN}',
        b'{"ref": "refs/heads/main", "commits": [1,]}',
        b'{"repository": {"id": 1e400, "full_name": "a/b"}}',
        b'{"ref": "refs/heads/\\ud800"}',
        b'{"commits": ["\xff\xfe"]}',  # invalid UTF-8 where the fast path would skip it
        b'{"commits": "\x01"}',
        b"\xef\xbb\xbf{}",  # UTF-8 byte order mark
        json.dumps({"ref": "refs/heads/main"}).encode("utf-16"),
        b'{"repository": null}',
        b'{"repository": []}',
        b'{"ref": "refs/heads/main", "ref": "refs/tags/v1"}',
        b'{"commits": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_odd_bodies_give_the_same_answer(body: bytes) -> None:
    same(body)


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "text/plain", "x+json"])
def test_content_types_give_the_same_answer(content_type: str | None) -> None:
    same(encode(push_payload()), content_type)


def test_form_encoded_pushes_give_the_same_answer() -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(push_payload())}).encode()
    same(body, "application/x-www-form-urlencoded")
    assert decode_push(body, "application/x-www-form-urlencoded").ref == "refs/heads/main"
