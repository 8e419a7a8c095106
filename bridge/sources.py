"""Find or create the Chroma Sync source of a described route, once per repository.

A route that describes its source (``source: {database_name, include_globs, app_id}``) instead of
naming it is the platform tier's normal case: one App on many repositories, a source per repository,
made on that repository's first push. The id is remembered in the store (so replicas and restarts
agree) and in memory (so the hot path makes no database call).
"""

from __future__ import annotations

from bridge.clients.sync import SyncClient
from bridge.clients.sync_errors import SyncConflict
from bridge.clients.sync_models import Source
from bridge.core.routing import SourceSpec
from bridge.store.base import Store


def _matches(source: Source, spec: SourceSpec, repository: str) -> bool:
    github = source.github
    if github is None or github.repository.lower() != repository.lower():
        return False
    if source.database_name != spec.database_name or (github.app_id or None) != spec.app_id:
        return False
    wanted = sorted(spec.include_globs) if spec.include_globs else None
    have = sorted(github.include_globs) if github.include_globs else None
    return wanted is None or have is None or wanted == have


class SourceResolver:
    def __init__(self, *, store: Store, sync: SyncClient) -> None:
        self._store = store
        self._sync = sync
        self._known: dict[str, str] = {}

    async def resolve(self, *, key: str, spec: SourceSpec, repository: str) -> str:
        """The source id for ``repository`` under ``spec``: remembered, found by listing, or created."""
        if key in self._known:
            return self._known[key]
        source_id = await self._store.get_source(key)
        if source_id is None:
            source_id = await self._find(spec, repository)
        if source_id is None:
            try:
                source_id = await self._sync.create_source(
                    database_name=spec.database_name,
                    repository=repository,
                    app_id=spec.app_id,
                    include_globs=list(spec.include_globs) if spec.include_globs else None,
                    embedding_model=spec.embedding_model,
                )
            except SyncConflict:
                source_id = await self._find(spec, repository, loose=True)
                if source_id is None:
                    raise
        await self._store.put_source(key, source_id)
        stored = await self._store.get_source(key)
        self._known[key] = stored or source_id
        return self._known[key]

    async def _find(self, spec: SourceSpec, repository: str, *, loose: bool = False) -> str | None:
        sources = await self._sync.list_sources(
            database_name=spec.database_name, source_type="github", repository=repository
        )
        for source in sources:
            if _matches(source, spec, repository):
                return source.id
        if loose and sources:
            return sources[0].id
        return None
