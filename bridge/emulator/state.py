"""The emulator's domain: sources, invocations and collections in memory, driven by an injectable clock.

An invocation's life is decided when it is created and read off the clock, lazily, whenever the state is
touched; no background task runs, so a fake clock makes every transition deterministic::

    created ── pending_seconds ──▶ processing ── processing_seconds ──▶ complete (collection finished)
       │                                                           └──▶ failed (fail_ratio, failing repo)
       └── PUT while pending ──▶ cancelled

Every public operation takes the lock: the server thread and a test thread may share one state.
Operations return wire-shaped dicts (the OpenAPI's shapes) or raise :class:`ApiError`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from bridge.emulator.errors import ApiError, bad_request, not_found
from bridge.emulator.faults import FaultRule
from bridge.emulator.validation import (
    Filters,
    parse_filters,
    parse_new_invocation,
    parse_new_source,
    require_uuid,
)

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
SUPPORTED_EMBEDDING_MODELS = frozenset({DEFAULT_MODEL})
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Knobs; ``POST /_emulator/config`` changes them. Timings apply to invocations created afterwards."""

    pending_seconds: float = 1.0
    processing_seconds: float = 2.0
    fail_ratio: float = 0.0
    create_status: int = 200  # the seeds say 200, Chroma's published OpenAPI 201
    legacy_ids: bool = False  # jobs carry "invocation_id" (the overview) instead of "id" (the OpenAPI)
    latency_seconds: float = 0.0  # added to every API request
    failing_repositories: frozenset[str] = frozenset()  # lower-case owner/name whose invocations fail
    databases: frozenset[str] | None = None  # None: every database exists; else others answer 404
    max_collection_name_length: int = 512  # open-source Chroma; Chroma Cloud allows 128

    def updated(self, changes: Mapping[str, object]) -> EmulatorConfig:
        """A copy with ``changes`` applied; a 400 for unknown keys or bad values."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise bad_request(f"unknown config keys: {sorted(unknown)}")
        return replace(self, **{key: _config_value(key, value) for key, value in changes.items()})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failing_repositories"] = sorted(self.failing_repositories)
        data["databases"] = None if self.databases is None else sorted(self.databases)
        return data


@dataclass(slots=True)
class SourceRecord:
    id: str
    database_name: str
    embedding_model: str
    repository: str
    app_id: str | None
    include_globs: tuple[str, ...] | None
    created_at: float
    seq: int

    def to_wire(self) -> dict[str, Any]:
        github = {"repository": self.repository, "app_id": self.app_id, "include_globs": self.include_globs}
        return {
            "id": self.id,
            "database_name": self.database_name,
            "embedding_model": self.embedding_model,
            "source_type": {"github": github},
            "created_at": iso(self.created_at),
        }


@dataclass(slots=True)
class InvocationRecord:
    id: str
    source_id: str
    database_name: str
    collection: str
    repository: str
    app_id: str | None
    sha: str | None
    branch: str | None
    created_at: float
    seq: int
    pending_seconds: float
    processing_seconds: float
    failure: str | None  # decided at creation: the error it will fail with
    state: str = "pending"

    @property
    def finished_at(self) -> float:
        return self.created_at + self.pending_seconds + self.processing_seconds

    def advance(self, now: float) -> bool:
        """Move along the clock; True when this call completed it (its collection is now finished)."""
        if self.state in ("complete", "failed", "cancelled"):
            return False
        if now >= self.finished_at:
            self.state = "failed" if self.failure else "complete"
            return self.state == "complete"
        self.state = "processing" if now >= self.created_at + self.pending_seconds else "pending"
        return False

    def status_wire(self) -> str | dict[str, Any]:
        if self.state == "complete":
            duration_ms = round(self.processing_seconds * 1000)
            return {"complete": {"finished_at": iso(self.finished_at), "duration_ms": duration_ms}}
        if self.state == "failed":
            return {"failed": {"error": self.failure}}
        return self.state

    def to_wire(self, *, legacy_ids: bool) -> dict[str, Any]:
        ref = {"sha": self.sha} if self.sha is not None else {"branch": self.branch}
        return {
            ("invocation_id" if legacy_ids else "id"): self.id,
            "status": self.status_wire(),
            "source_id": self.source_id,
            "metadata": {
                "database_name": self.database_name,
                "collection_name": self.collection,
                "github": {"git_ref_identifier": ref},
            },
            "created_at": iso(self.created_at),
        }

    def to_json(self) -> dict[str, Any]:
        """The inspection view (``GET /_emulator/state``)."""
        return {
            "id": self.id,
            "source_id": self.source_id,
            "database_name": self.database_name,
            "collection": self.collection,
            "repository": self.repository,
            "sha": self.sha,
            "branch": self.branch,
            "status": self.state,
            "error": self.failure if self.state == "failed" else None,
            "created_at": iso(self.created_at),
        }


class EmulatorState:
    """Everything the emulator knows; one instance per emulated Chroma Sync account."""

    def __init__(
        self, *, config: EmulatorConfig | None = None, clock: Clock = time.time, seed: int | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.sources: dict[str, SourceRecord] = {}
        self.invocations: dict[str, InvocationRecord] = {}
        # The invocations not yet at an end: the only ones the clock can move. Every API call advances
        # them, so a long run (a benchmark creates thousands) must not walk the finished ones each time.
        self._running: dict[str, InvocationRecord] = {}
        self.collections: dict[tuple[str, str], bool] = {}  # (database, collection) -> finished_ingest
        self.faults: list[FaultRule] = []
        self.counters: Counter[str] = Counter()  # requests received, per operation
        self.faults_fired: Counter[str] = Counter()  # per "operation:kind"
        self._random = random.Random(seed)  # noqa: S311 -- simulated failures, not cryptography
        self._seq = itertools.count()
        self._lock = threading.RLock()

    # Sources

    def create_source(self, body: object) -> dict[str, Any]:
        new = parse_new_source(body, embedding_models=SUPPORTED_EMBEDDING_MODELS)
        with self._lock:
            if self.config.databases is not None and new.database_name not in self.config.databases:
                raise not_found(f"database {new.database_name!r} does not exist")
            for source in self.sources.values():
                same_repo = source.repository.lower() == new.repository.lower()
                if source.database_name == new.database_name and same_repo:
                    raise ApiError(409, "a source for this repository and database already exists")
            source = SourceRecord(
                id=str(uuid.uuid4()),
                database_name=new.database_name,
                embedding_model=new.embedding_model,
                repository=new.repository,
                app_id=new.app_id,
                include_globs=new.include_globs,
                created_at=self.clock(),
                seq=next(self._seq),
            )
            self.sources[source.id] = source
            return {"source_id": source.id}

    def add_source(
        self,
        *,
        database_name: str,
        repository: str,
        app_id: str | None = None,
        include_globs: Iterable[str] | None = None,
    ) -> str:
        """Create a source from Python (as ``POST /api/v1/sources`` would) and return its id."""
        github: dict[str, Any] = {"repository": repository, "app_id": app_id}
        if include_globs is not None:
            github["include_globs"] = list(include_globs)
        body = {"database_name": database_name, "embedding_model": DEFAULT_MODEL, "github": github}
        return str(self.create_source(body)["source_id"])

    def get_source(self, source_id: str) -> dict[str, Any]:
        with self._lock:
            return self._source(source_id).to_wire()

    def list_sources(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = parse_filters(query, invocations=False)
        with self._lock:
            found = [
                source
                for source in self.sources.values()
                if _matches(filters, source.database_name, source.app_id, source.repository)
            ]
            return [source.to_wire() for source in _page(found, filters)]

    def delete_source(self, source_id: str) -> None:
        """Forget a source; its invocations carry on, as the API documents."""
        with self._lock:
            del self.sources[self._source(source_id).id]

    # Invocations

    def create_invocation(self, source_id: str, body: object) -> dict[str, Any]:
        require_uuid(source_id, "source_id")
        new = parse_new_invocation(body, max_collection_name_length=self.config.max_collection_name_length)
        with self._lock:
            self._advance()
            source = self._source(source_id)
            key = (source.database_name, new.collection)
            if self.collections.get(key):
                raise ApiError(409, f"collection {new.collection!r} already holds synced data")
            config = self.config
            failure = None
            if source.repository.lower() in config.failing_repositories:
                failure = f"failed to sync {source.repository}: repository is failing in the emulator"
            elif config.fail_ratio and self._random.random() < config.fail_ratio:
                failure = f"failed to sync {source.repository}: simulated failure"
            invocation = InvocationRecord(
                id=str(uuid.uuid4()),
                source_id=source.id,
                database_name=source.database_name,
                collection=new.collection,
                repository=source.repository,
                app_id=source.app_id,
                sha=new.sha,
                branch=new.branch,
                created_at=self.clock(),
                seq=next(self._seq),
                pending_seconds=config.pending_seconds,
                processing_seconds=config.processing_seconds,
                failure=failure,
            )
            self.invocations[invocation.id] = invocation
            self._running[invocation.id] = invocation
            self.collections.setdefault(key, False)
            self._advance()
            return {"invocation_id": invocation.id}

    def get_invocation(self, invocation_id: str) -> dict[str, Any]:
        with self._lock:
            self._advance()
            return self._invocation(invocation_id).to_wire(legacy_ids=self.config.legacy_ids)

    def list_invocations(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = parse_filters(query, invocations=True)
        with self._lock:
            self._advance()
            if filters.source_id is not None and filters.source_id not in self.sources:
                raise not_found(f"source {filters.source_id} does not exist")
            found = [
                invocation
                for invocation in self.invocations.values()
                if (filters.source_id in (None, invocation.source_id))
                and (filters.status in (None, invocation.state))
                and _matches(filters, invocation.database_name, invocation.app_id, invocation.repository)
            ]
            return [item.to_wire(legacy_ids=self.config.legacy_ids) for item in _page(found, filters)]

    def cancel_invocation(self, invocation_id: str) -> None:
        with self._lock:
            self._advance()
            invocation = self._invocation(invocation_id)
            if invocation.state != "pending":
                raise ApiError(412, f"invocation is {invocation.state}, not pending")
            invocation.state = "cancelled"
            self._running.pop(invocation.id, None)

    # Faults, configuration, inspection

    def record_request(self, operation: str) -> FaultRule | None:
        """Count a request to ``operation`` and return the fault it triggers, if any."""
        with self._lock:
            self.counters[operation] += 1
            for rule in self.faults:
                if not rule.matches(operation):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                if rule.times > 0:
                    rule.times -= 1
                self.faults = [rule for rule in self.faults if rule.times != 0]
                self.faults_fired[f"{operation}:{rule.kind}"] += 1
                return rule
            return None

    def add_faults(self, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            self.faults.extend(rules)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def configure(self, **changes: object) -> EmulatorConfig:
        """Change configuration (validated like ``POST /_emulator/config``)."""
        with self._lock:
            self.config = self.config.updated(changes)
            return self.config

    def mark_finished(self, database_name: str, collection: str) -> None:
        """Pretend ``collection`` already holds finished synced data (creating onto it answers 409)."""
        with self._lock:
            self.collections[(database_name, collection)] = True

    def reset(self) -> None:
        """Forget sources, invocations, collections, faults and counters; keep config and clock."""
        with self._lock:
            self.sources.clear()
            self.invocations.clear()
            self._running.clear()
            self.collections.clear()
            self.faults.clear()
            self.counters.clear()
            self.faults_fired.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything, for ``GET /_emulator/state`` and assertions; invocations in creation order."""
        with self._lock:
            self._advance()
            return {
                "sources": [
                    {**source.to_wire(), "repository": source.repository} for source in self.sources.values()
                ],
                "invocations": [invocation.to_json() for invocation in self.invocations.values()],
                "collections": [
                    {"database_name": db, "collection_name": name, "finished_ingest": finished}
                    for (db, name), finished in self.collections.items()
                ],
                "counters": dict(self.counters),
                "faults": [rule.to_json() for rule in self.faults],
                "faults_fired": dict(self.faults_fired),
                "config": self.config.to_json(),
            }

    # Internals (callers hold the lock)

    def _advance(self) -> None:
        now = self.clock()
        for invocation in list(self._running.values()):
            if invocation.advance(now):
                self.collections[(invocation.database_name, invocation.collection)] = True
            if invocation.state in ("complete", "failed", "cancelled"):
                del self._running[invocation.id]

    def _source(self, source_id: str) -> SourceRecord:
        require_uuid(source_id, "source_id")
        source = self.sources.get(source_id)
        if source is None:
            raise not_found(f"source {source_id} does not exist")
        return source

    def _invocation(self, invocation_id: str) -> InvocationRecord:
        require_uuid(invocation_id, "invocation_id")
        invocation = self.invocations.get(invocation_id)
        if invocation is None:
            raise not_found(f"invocation {invocation_id} does not exist")
        return invocation


_Record = TypeVar("_Record", SourceRecord, InvocationRecord)


def iso(timestamp: float) -> str:
    """RFC 3339 UTC, as Sync writes ``created_at``."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _matches(filters: Filters, database_name: str, app_id: str | None, repository: str) -> bool:
    return (
        filters.database_name in (None, database_name)
        and filters.app_id in (None, app_id)
        and (filters.repository is None or filters.repository.lower() == repository.lower())
    )


def _page(items: list[_Record], filters: Filters) -> list[_Record]:
    ordered = sorted(items, key=lambda item: (item.created_at, item.seq), reverse=filters.page.descending)
    return ordered[filters.page.offset : filters.page.offset + filters.page.limit]


def _config_value(key: str, value: object) -> Any:
    """A configuration value checked and normalised; a 400 when it is not acceptable."""
    if key in ("pending_seconds", "processing_seconds", "latency_seconds"):
        return _number(key, value, 0.0, 86_400.0)
    if key == "fail_ratio":
        return _number(key, value, 0.0, 1.0)
    if key == "create_status":
        if isinstance(value, bool) or value not in (200, 201):
            raise bad_request("create_status must be 200 or 201")
        return value
    if key == "legacy_ids":
        if not isinstance(value, bool):
            raise bad_request("legacy_ids must be a boolean")
        return value
    if key == "failing_repositories":
        return frozenset(name.lower() for name in _strings(key, value))
    if key == "databases":
        return None if value is None else frozenset(_strings(key, value))
    # max_collection_name_length
    if isinstance(value, bool) or not isinstance(value, int) or not 3 <= value <= 512:
        raise bad_request(f"{key} must be an integer from 3 to 512")
    return value


def _number(key: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def _strings(key: str, value: object) -> list[str]:
    if not isinstance(value, list | tuple | set | frozenset) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{key} must be a list of strings")
    return list(value)
