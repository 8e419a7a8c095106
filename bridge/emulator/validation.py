"""Request validation as Chroma Sync documents it: bodies and queries in, typed requests or a 400 out."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from bridge.emulator.errors import bad_request

JOB_STATES = ("pending", "processing", "complete", "failed", "cancelled")
SOURCE_TYPES = ("github",)
DEFAULT_LIMIT = 100

_COLLECTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_IPV4_LIKE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_DIGITS = re.compile(r"[0-9]{1,9}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class NewSource:
    database_name: str
    embedding_model: str
    repository: str
    app_id: str | None
    include_globs: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class NewInvocation:
    collection: str
    sha: str | None
    branch: str | None


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    descending: bool = True


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters both list endpoints share (``source_id`` and ``status`` only apply to invocations)."""

    page: Page
    database_name: str | None = None
    source_type: str | None = None
    app_id: str | None = None
    repository: str | None = None
    source_id: str | None = None
    status: str | None = None


def require_uuid(value: str, what: str) -> str:
    """``value`` when it is a UUID (ids are UUIDs in the OpenAPI), else a 400."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise bad_request(f"{what} is not a valid UUID") from None
    return value


def check_collection_name(name: str, *, max_length: int) -> None:
    """Chroma's rule: 3..max_length of [A-Za-z0-9._-], alphanumeric at both ends, no '..', not an IPv4."""
    if not 3 <= len(name) <= max_length:
        raise bad_request(f"collection name must be 3 to {max_length} characters")
    if not _COLLECTION_NAME.fullmatch(name):
        raise bad_request(
            "collection name may contain only [A-Za-z0-9._-] and must start and end with a letter or digit"
        )
    if ".." in name:
        raise bad_request("collection name must not contain '..'")
    if _IPV4_LIKE.fullmatch(name):
        raise bad_request("collection name must not be an IPv4 address")


def parse_new_source(body: object, *, embedding_models: Collection[str]) -> NewSource:
    """A create-source body, in the seeds' flat shape or with ``embedding: {dense: {model}}``."""
    data = _object(body, "body")
    database_name = _string(data, "database_name")
    model = _embedding_model(data)
    if model not in embedding_models:
        raise bad_request(f"unsupported embedding model {model!r}")
    github = _object(data.get("github"), "github")
    repository = _string(github, "repository")
    if not _REPOSITORY.fullmatch(repository):
        raise bad_request("github.repository must be owner/name")
    app_id = github.get("app_id")
    if app_id is not None and (not isinstance(app_id, str) or not app_id):
        raise bad_request("github.app_id must be a non-empty string or null")
    globs = github.get("include_globs")
    if globs is not None and (
        not isinstance(globs, list) or not all(isinstance(glob, str) and glob for glob in globs)
    ):
        raise bad_request("github.include_globs must be a list of non-empty strings or null")
    return NewSource(database_name, model, repository, app_id, tuple(globs) if globs is not None else None)


def parse_new_invocation(body: object, *, max_collection_name_length: int) -> NewInvocation:
    """A create-invocation body: a valid collection name and exactly one of sha and branch."""
    data = _object(body, "body")
    collection = _string(data, "target_collection_name")
    check_collection_name(collection, max_length=max_collection_name_length)
    ref = _object(data.get("ref_identifier"), "ref_identifier")
    if len(ref) != 1 or next(iter(ref)) not in ("sha", "branch"):
        raise bad_request("ref_identifier must have exactly one of sha and branch")
    kind = next(iter(ref))
    value = _string(ref, kind, where=f"ref_identifier.{kind}")
    return NewInvocation(collection, value if kind == "sha" else None, value if kind == "branch" else None)


def parse_filters(query: Mapping[str, str], *, invocations: bool) -> Filters:
    """The query of ``GET /sources`` (``invocations=False``) or ``GET /invocations``."""
    source_type = query.get("source_type")
    if source_type is not None and source_type not in SOURCE_TYPES:
        raise bad_request(f"source_type must be one of {list(SOURCE_TYPES)}")
    app_id, repository = query.get("github.app_id"), query.get("github.repository")
    if (app_id is not None or repository is not None) and source_type != "github":
        raise bad_request("github.* filters require source_type=github")
    source_id = status = None
    if invocations:
        source_id = query.get("source_id")
        if source_id is not None:
            require_uuid(source_id, "source_id")
            if query.get("database_name") is not None:
                raise bad_request("source_id and database_name cannot be given together")
        status = query.get("status")
        if status is not None and status not in JOB_STATES:
            raise bad_request(f"status must be one of {list(JOB_STATES)}")
    return Filters(
        page=_page(query),
        database_name=query.get("database_name"),
        source_type=source_type,
        app_id=app_id,
        repository=repository,
        source_id=source_id,
        status=status,
    )


def _page(query: Mapping[str, str]) -> Page:
    order_by = query.get("order_by", "DESC")
    if order_by not in ("ASC", "DESC"):
        raise bad_request("order_by must be one of ['ASC', 'DESC']")
    return Page(
        limit=_non_negative(query, "limit", DEFAULT_LIMIT),
        offset=_non_negative(query, "offset", 0),
        descending=order_by == "DESC",
    )


def _non_negative(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise bad_request(f"{name} must be a non-negative integer")
    return int(raw)


def _embedding_model(data: Mapping[str, object]) -> str:
    flat = data.get("embedding_model")
    embedding = data.get("embedding")
    if flat is not None and embedding is not None:
        raise bad_request("give embedding_model or embedding, not both")
    if embedding is not None:
        dense = _object(_object(embedding, "embedding").get("dense"), "embedding.dense")
        return _string(dense, "model", where="embedding.dense.model")
    return _string(data, "embedding_model")


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be an object")
    return value


def _string(data: Mapping[str, object], key: str, *, where: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{where or key} is required and must be a non-empty string")
    return value
