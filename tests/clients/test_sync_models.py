"""The response models read every documented spelling of a Sync response."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.clients.sync_models import GitRef, IndexJobMetadata, Invocation, InvocationStatus, Source
from tests.clients.conftest import sample

FINISHED = datetime(2026, 3, 4, 10, 20, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wire", "state", "finished_at", "duration_ms", "error"),
    [
        ("pending", "pending", None, None, None),
        ("processing", "processing", None, None, None),
        ("cancelled", "cancelled", None, None, None),
        (
            {"complete": {"finished_at": "2026-03-04T10:20:01Z", "duration_ms": 2500}},
            "complete",
            FINISHED,
            2500,
            None,
        ),
        ({"complete": {"finished_at": "2026-03-04T10:20:01+00:00"}}, "complete", FINISHED, None, None),
        ({"failed": {"error": "clone failed"}}, "failed", None, None, "clone failed"),
    ],
)
def test_job_status_variants_parse(
    wire: Any, state: str, finished_at: datetime | None, duration_ms: int | None, error: str | None
) -> None:
    """Every JobStatus variant gives its state and details (duration_ms is optional, as in the overview)."""
    status = InvocationStatus.model_validate(wire)
    assert (status.state, status.finished_at, status.duration_ms, status.error) == (
        state,
        finished_at,
        duration_ms,
        error,
    )


@pytest.mark.parametrize(
    ("state", "terminal"),
    [("pending", False), ("processing", False), ("complete", True), ("failed", True), ("cancelled", True)],
)
def test_terminal_states(state: str, terminal: bool) -> None:
    """complete, failed and cancelled end an invocation; pending and processing do not."""
    assert InvocationStatus.model_validate(state).terminal is terminal


@pytest.mark.parametrize("wire", ["queued", {"exploded": {}}, 3, None])
def test_an_undocumented_status_is_rejected(wire: Any) -> None:
    """A status outside the schema fails validation (the client turns it into SyncProtocolError)."""
    with pytest.raises(ValidationError):
        InvocationStatus.model_validate(wire)


_NAMES = {"database_name": "code", "collection_name": "c-1"}


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ({"github": {"git_ref_identifier": {"sha": "abc"}}}, "github"),
        ({"github": {"git_ref_identifier": {"branch": "main"}}}, "github"),
        ({"s3": {"bucket_name": "b", "object_key": None}}, "s3"),
        ({"web_scrape": None}, "web_scrape"),
        ({"kind": "web_scrape"}, "web_scrape"),
        ({"type": "web_scrape"}, "web_scrape"),
        ({"Unknown": None}, "Unknown"),
        ({"kind": "Unknown"}, "Unknown"),
        ({"kind": {"github": {"git_ref_identifier": {"sha": "abc"}}}}, "github"),
        ({}, "Unknown"),
    ],
)
def test_metadata_kind_is_found_in_every_serialisation(extra: dict[str, Any], kind: str) -> None:
    """The kind is read from its key, a null unit variant, a kind/type string or a nested object."""
    metadata = IndexJobMetadata.model_validate({**_NAMES, **extra})
    assert (metadata.kind, metadata.database_name, metadata.collection_name) == (kind, "code", "c-1")


def test_github_metadata_carries_the_ref() -> None:
    """A GitHub job exposes its git_ref_identifier as a GitRef."""
    metadata = IndexJobMetadata.model_validate(
        {**_NAMES, "github": {"git_ref_identifier": {"branch": "release/2"}}}
    )
    assert metadata.github is not None
    assert metadata.github.git_ref_identifier == GitRef(branch="release/2")


def test_s3_metadata_carries_every_field() -> None:
    """An S3 job exposes bucket, key, custom id and additional metadata."""
    s3 = {"bucket_name": "b", "object_key": "k", "custom_id": "x", "additional_metadata": {"a": 1}}
    metadata = IndexJobMetadata.model_validate({**_NAMES, "s3": s3})
    assert metadata.s3 is not None
    assert (metadata.s3.bucket_name, metadata.s3.object_key, metadata.s3.custom_id) == ("b", "k", "x")
    assert metadata.s3.additional_metadata == {"a": 1}


@pytest.mark.parametrize(("key", "value"), [("id", "j-1"), ("invocation_id", "j-1")])
def test_invocation_id_has_two_spellings(key: str, value: str) -> None:
    """An invocation's id is read from id (OpenAPI) or invocation_id (overview)."""
    wire = {**sample("invocation_openapi.json")}
    del wire["id"]
    wire[key] = value
    assert Invocation.model_validate(wire).id == value


def test_invocation_exposes_collection_and_ref() -> None:
    """collection_name and ref are shortcuts into the metadata."""
    invocation = Invocation.model_validate(sample("invocation_openapi.json"))
    assert invocation.collection_name == "acme-api-main-3f2a1b9c8d7e"
    assert invocation.ref == GitRef(sha="3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a")


@pytest.mark.parametrize("name", ["source.json", "source_nested_embedding.json"])
def test_source_embedding_model_has_two_shapes(name: str) -> None:
    """embedding_model is read flat or from embedding.dense.model."""
    source = Source.model_validate(sample(name))
    assert source.embedding_model == "Qwen/Qwen3-Embedding-0.6B"
    assert source.source_type == "github"


def test_source_exposes_its_github_settings() -> None:
    """source_type.github becomes .github with repository, app id and globs."""
    source = Source.model_validate(sample("source.json"))
    assert source.github is not None
    assert source.github.repository == "acme/api"
    assert source.github.app_id == "123456"
    assert source.github.include_globs == ("**/*.py", "docs/**")


def test_a_numeric_app_id_becomes_a_string() -> None:
    """GitHub App ids are numbers on GitHub; the model keeps them as strings."""
    wire = sample("source.json")
    wire["source_type"]["github"]["app_id"] = 123456
    source = Source.model_validate(wire)
    assert source.github is not None
    assert source.github.app_id == "123456"


def test_unknown_fields_are_ignored() -> None:
    """Fields the server adds later do not break parsing."""
    wire = {**sample("invocation_openapi.json"), "priority": 3, "tenant": {"id": "t"}}
    assert Invocation.model_validate(wire).id == "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"


def test_models_are_frozen() -> None:
    """A parsed response cannot be changed by accident."""
    invocation = Invocation.model_validate(sample("invocation_openapi.json"))
    with pytest.raises(ValidationError):
        invocation.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("ref", [{}, {"sha": "a", "branch": "b"}])
def test_git_ref_needs_exactly_one_of_sha_and_branch(ref: dict[str, str]) -> None:
    """A ref is a commit or a branch, never neither or both."""
    with pytest.raises(ValidationError):
        GitRef.model_validate(ref)


@pytest.mark.parametrize(
    ("ref", "body"), [(GitRef(sha="a"), {"sha": "a"}), (GitRef(branch="b"), {"branch": "b"})]
)
def test_git_ref_request_body(ref: GitRef, body: dict[str, str]) -> None:
    """as_body gives the ref_identifier object with only the key that is set."""
    assert ref.as_body() == body
