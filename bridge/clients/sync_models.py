"""Typed, frozen views of Chroma Sync's responses, tolerant of both published spellings.

The overview and the OpenAPI disagree in places; each model reads both and exposes one shape:

- a job's id is ``id`` (OpenAPI) or ``invocation_id`` (overview);
- a source's model is ``embedding_model: str`` (overview) or ``embedding: {dense: {model}}`` (newer);
- a job status is a string (``pending``, ``processing``, ``cancelled``) or a one-key object
  (``{"complete": {finished_at, duration_ms}}``, ``{"failed": {error}}``): see :class:`InvocationStatus`;
- job metadata is ``allOf(IndexJobMetadataKind, {database_name, collection_name})``, i.e. a serde
  flattened enum: the kind is an extra key (``github: {...}``, ``s3: {...}``, ``web_scrape: null``)
  and, for the unit kinds, possibly a string value under ``kind``/``type``: see :class:`IndexJobMetadata`.

Unknown fields are ignored everywhere, so additions on the server side do not break the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DEFAULT_EMBEDDING_MODEL: Final = "Qwen/Qwen3-Embedding-0.6B"

JobState = Literal["pending", "processing", "complete", "failed", "cancelled"]
MetadataKind = Literal["github", "s3", "web_scrape", "Unknown"]

_TERMINAL_STATES: Final = frozenset({"complete", "failed", "cancelled"})
_UNIT_KINDS: Final = {"web_scrape": "web_scrape", "unknown": "Unknown"}


def _id_to_str(value: object) -> object:
    """GitHub App ids are numbers on GitHub and strings in Sync: accept both."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


IdString = Annotated[str, BeforeValidator(_id_to_str)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class GitRef(_Model):
    """A commit (``sha``) or a branch (``branch``): exactly one of the two."""

    sha: str | None = None
    branch: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.sha is None) == (self.branch is None):
            raise ValueError("a ref identifier has exactly one of sha and branch")
        return self

    def as_body(self) -> dict[str, str]:
        """The ``ref_identifier`` request object."""
        return {"sha": self.sha} if self.sha is not None else {"branch": str(self.branch)}


class GitHubSource(_Model):
    """The GitHub part of a source: which repository, through which App, which files."""

    repository: str
    app_id: IdString | None = None
    include_globs: tuple[str, ...] | None = None


class Source(_Model):
    """A Chroma Sync source (``GET /api/v1/sources/{id}``)."""

    id: str = Field(validation_alias=AliasChoices("id", "source_id"))
    database_name: str
    embedding_model: str | None = None
    source_type: str | None = None
    github: GitHubSource | None = None
    created_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if data.get("embedding_model") is None:
            data["embedding_model"] = _dig(data, "embedding", "dense", "model")
        source_type = data.get("source_type")
        if isinstance(source_type, Mapping):
            data.setdefault("github", source_type.get("github"))
            data["source_type"] = next(iter(source_type), None)
        elif source_type is None and data.get("github") is not None:
            data["source_type"] = "github"
        return data


class InvocationStatus(_Model):
    """A job status; ``state`` names it, the other fields carry the details of ``complete``/``failed``."""

    state: JobState
    finished_at: datetime | None = None
    duration_ms: int | None = None
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"state": data.lower()}
        if isinstance(data, Mapping) and "state" not in data and len(data) == 1:
            ((state, details),) = data.items()
            fields = dict(details) if isinstance(details, Mapping) else {}
            fields.pop("state", None)
            return {**fields, "state": str(state).lower()}
        return data

    @property
    def terminal(self) -> bool:
        """Whether the invocation has ended (complete, failed or cancelled)."""
        return self.state in _TERMINAL_STATES


class GitHubMetadata(_Model):
    git_ref_identifier: GitRef


class S3Metadata(_Model):
    bucket_name: str
    object_key: str | None = None
    custom_id: str | None = None
    additional_metadata: dict[str, Any] | None = None


class IndexJobMetadata(_Model):
    """Where an invocation writes (database, collection) and what it reads (``kind`` and its details)."""

    database_name: str
    collection_name: str
    kind: MetadataKind = "Unknown"
    github: GitHubMetadata | None = None
    s3: S3Metadata | None = None

    @model_validator(mode="before")
    @classmethod
    def _find_kind(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        nested = data.get("kind")
        if isinstance(nested, Mapping):  # {"kind": {"github": {...}}}: the enum was not flattened
            data.update({key: value for key, value in nested.items() if key in ("github", "s3")})
            data["kind"] = next(iter(nested), None)
        data["kind"] = _metadata_kind(data)
        return data


def _metadata_kind(data: Mapping[str, Any]) -> str:
    for kind in ("github", "s3"):
        if isinstance(data.get(kind), Mapping):
            return kind
    for key, kind in _UNIT_KINDS.items():  # serde writes a flattened unit variant as {"web_scrape": null}
        if any(str(name).lower() == key for name in data):
            return kind
    for key in ("kind", "type", "source_type"):
        value = data.get(key)
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in ("github", "s3"):
                return lowered
            if lowered in _UNIT_KINDS:
                return _UNIT_KINDS[lowered]
    return "Unknown"


class Invocation(_Model):
    """One Chroma Sync invocation (a job) as ``GET /api/v1/invocations/{id}`` returns it."""

    id: str = Field(validation_alias=AliasChoices("id", "invocation_id"))
    status: InvocationStatus
    source_id: str | None = None
    metadata: IndexJobMetadata
    created_at: datetime

    @property
    def collection_name(self) -> str:
        return self.metadata.collection_name

    @property
    def ref(self) -> GitRef | None:
        """The GitHub ref the invocation syncs, when it is a GitHub invocation."""
        return self.metadata.github.git_ref_identifier if self.metadata.github else None


class CreatedSource(_Model):
    source_id: str = Field(validation_alias=AliasChoices("source_id", "id"))


class CreatedInvocation(_Model):
    invocation_id: str = Field(validation_alias=AliasChoices("invocation_id", "id"))


def _dig(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
