"""Turn a verified delivery (headers and raw body) into typed values, once, at the edge.

Payloads are modelled loosely: only the fields the bridge needs are read, and each is checked for its
type, so a new field GitHub adds, or ``repository.created_at`` being an epoch integer in push payloads
only, changes nothing.

``decode_push`` is the ingress's fast path for a push: msgspec decodes only the fields ``parse_push``
reads (the commit list, which is most of a push body, is checked for well-formed JSON and skipped,
never turned into Python objects), then ``parse_push`` checks them as usual. Whatever msgspec refuses
goes through ``decode_body`` and ``parse_push``, so answers and error messages are those of the
standard library's decoder, byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import msgspec

from bridge.core.errors import MalformedPayload, MissingHeader, UnsupportedContentType

ZERO_SHA = "0" * 40
_SHA = re.compile(r"^[0-9a-f]{40}$")
_GUID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_EVENT = re.compile(r"^[a-z_]{1,64}$")
#: Git refuses ASCII control characters in ref names, and a lone surrogate cannot be stored as UTF-8.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class DeliveryHeaders(NamedTuple):
    """The GitHub headers of one delivery.

    This, :class:`Repository` and :class:`Push` are ``NamedTuple``s for the reason given in
    ``bridge.core.jobs.DeliveryRecord``: the ingress makes one of each per delivery."""

    event: str
    delivery_id: str
    hook_id: str
    signature_256: str | None
    target_type: str | None
    target_id: str | None


class Repository(NamedTuple):
    id: int
    full_name: str
    default_branch: str
    private: bool

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[-1]


class Push(NamedTuple):
    """What the bridge needs of a ``push`` payload."""

    repository: Repository
    ref: str
    before: str
    after: str
    created: bool
    deleted: bool
    forced: bool
    installation_id: int | None
    pushed_at: int | None

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/...``; ``None`` for tags and other refs."""
        prefix = "refs/heads/"
        return self.ref[len(prefix) :] if self.ref.startswith(prefix) else None

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value.strip() if isinstance(value, str) else None


def parse_headers(headers: Mapping[str, str]) -> DeliveryHeaders:
    """Read the GitHub headers; raise ``MissingHeader`` naming the first one absent or malformed.

    ``headers`` may be any case-insensitive mapping or a plain mapping with lower-case keys.
    """
    event = _header(headers, "X-GitHub-Event")
    if not event or not _EVENT.match(event):
        raise MissingHeader("X-GitHub-Event")
    delivery = _header(headers, "X-GitHub-Delivery")
    if not delivery or not _GUID.match(delivery):
        raise MissingHeader("X-GitHub-Delivery")
    # Hook id is always sent by GitHub; a missing one (hand-made request) dedupes under "0".
    hook = _header(headers, "X-GitHub-Hook-ID") or "0"
    if not hook.isdigit() or len(hook) > 20:
        raise MissingHeader("X-GitHub-Hook-ID")
    return DeliveryHeaders(
        event=event,
        delivery_id=delivery,
        hook_id=hook,
        signature_256=_header(headers, "X-Hub-Signature-256"),
        target_type=_header(headers, "X-GitHub-Hook-Installation-Target-Type"),
        target_id=_header(headers, "X-GitHub-Hook-Installation-Target-ID"),
    )


def _media(content_type: str | None) -> str:
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a JSON or form-encoded (``payload=``) body into a JSON object."""
    media = _media(content_type)
    if media == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedPayload("form body is not valid") from exc
        payloads = fields.get("payload")
        if not payloads or len(payloads) != 1:
            raise MalformedPayload("form body has no single payload field")
        raw: str | bytes = payloads[0]
    elif media == "application/json" or media.endswith("+json"):
        raw = body
    else:
        raise UnsupportedContentType(media[:64])
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedPayload("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise MalformedPayload("body is not a JSON object")
    return data


def _get(obj: Mapping[str, Any], key: str, kind: type[Any] | tuple[type[Any], ...], where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedPayload(f"{where}{key} is missing or has the wrong type")
    return value


def _sha(obj: Mapping[str, Any], key: str) -> str:
    value = _get(obj, key, str, "")
    if not _SHA.match(value):
        raise MalformedPayload(f"{key} is not a 40-hex commit id")
    return str(value)


def parse_push(payload: Mapping[str, Any]) -> Push:
    """Extract a ``Push`` from a decoded push payload; raise ``MalformedPayload`` on a bad shape."""
    repo = _get(payload, "repository", dict, "")
    full_name = _get(repo, "full_name", str, "repository.")
    if full_name.count("/") != 1 or len(full_name) > 200 or _UNSTORABLE.search(full_name):
        raise MalformedPayload("repository.full_name is not owner/name")
    installation = payload.get("installation")
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    pushed_at = repo.get("pushed_at")
    ref = _get(payload, "ref", str, "")
    if not ref.startswith("refs/") or len(ref) > 1024 or _UNSTORABLE.search(ref):
        raise MalformedPayload("ref is not a full git ref")
    return Push(
        repository=Repository(
            id=_get(repo, "id", int, "repository."),
            full_name=full_name,
            default_branch=str(repo.get("default_branch") or repo.get("master_branch") or "main"),
            private=bool(repo.get("private", False)),
        ),
        ref=ref,
        before=_sha(payload, "before"),
        after=_sha(payload, "after"),
        created=bool(payload.get("created", False)),
        deleted=bool(payload.get("deleted", False)),
        forced=bool(payload.get("forced", False)),
        installation_id=installation_id if isinstance(installation_id, int) else None,
        pushed_at=pushed_at if isinstance(pushed_at, int) and not isinstance(pushed_at, bool) else None,
    )


_UNSET: Any = msgspec.UNSET


class _RepositoryFields(msgspec.Struct):
    """The ``repository`` fields ``parse_push`` reads (a real one has a hundred others)."""

    id: Any = _UNSET
    full_name: Any = _UNSET
    default_branch: Any = _UNSET
    master_branch: Any = _UNSET
    private: Any = _UNSET
    pushed_at: Any = _UNSET


class _PushFields(msgspec.Struct):
    """The top-level push fields ``parse_push`` reads."""

    ref: Any = _UNSET
    before: Any = _UNSET
    after: Any = _UNSET
    created: Any = _UNSET
    deleted: Any = _UNSET
    forced: Any = _UNSET
    installation: Any = _UNSET
    repository: _RepositoryFields | None = None


_decode_push_fields = msgspec.json.Decoder(_PushFields).decode


def _present(struct: msgspec.Struct) -> dict[str, Any]:
    return {
        name: value
        for name in struct.__struct_fields__
        if (value := getattr(struct, name)) is not _UNSET and name != "repository"
    }


def decode_push(body: bytes, content_type: str | None) -> Push:
    """``parse_push(decode_body(body, content_type))``, without building what the bridge never reads."""
    if _media(content_type) == "application/json" and body.isascii():  # non-ASCII: json decides UTF-8
        try:
            fields = _decode_push_fields(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass  # the standard path below gives the answer and the message
        else:
            payload = _present(fields)
            if fields.repository is not None:
                payload["repository"] = _present(fields.repository)
            return parse_push(payload)
    return parse_push(decode_body(body, content_type))
