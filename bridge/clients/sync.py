"""An async client for the Chroma Sync API.

Usage::

    from bridge.clients.sync import SyncClient, SyncConflict

    async with SyncClient(base_url="https://sync.trychroma.com", token=api_key) as sync:
        source_id = await sync.create_source(database_name="code", repository="acme/api", app_id="123")
        try:
            invocation_id = await sync.create_invocation(source_id, collection="api-main-1a2b3c", sha=sha)
        except SyncConflict:
            ...  # the collection already holds finished synced data: this commit is indexed
        invocation = await sync.get_invocation(invocation_id)
        print(invocation.status.state)  # pending, processing, complete, failed or cancelled

Every failure is a :class:`~bridge.clients.sync_errors.SyncError` carrying ``reason``, ``retryable``
and ``outcome_unknown``; the client never retries by itself (the caller owns the retry policy). After an
error with ``outcome_unknown`` on a create, :meth:`SyncClient.find_invocation` looks for the invocation
the lost answer would have named. Pass your own ``httpx.AsyncClient`` to share a connection pool (you
then own it and its timeouts); otherwise the client makes one and :meth:`SyncClient.aclose` closes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from bridge import __version__
from bridge.clients.sync_errors import (
    SyncBadRequest,
    SyncConflict,
    SyncError,
    SyncForbidden,
    SyncHTTPError,
    SyncNotFound,
    SyncPreconditionFailed,
    SyncProtocolError,
    SyncRateLimited,
    SyncServerError,
    SyncTimeout,
    SyncTransportError,
    SyncUnauthorized,
    SyncUnexpectedStatus,
    error_from_response,
)
from bridge.clients.sync_models import (
    DEFAULT_EMBEDDING_MODEL,
    CreatedInvocation,
    CreatedSource,
    GitRef,
    Invocation,
    InvocationStatus,
    JobState,
    Source,
)
from bridge.clients.transport import default_transport

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "Invocation",
    "InvocationStatus",
    "Source",
    "SyncBadRequest",
    "SyncClient",
    "SyncConflict",
    "SyncError",
    "SyncForbidden",
    "SyncHTTPError",
    "SyncNotFound",
    "SyncPreconditionFailed",
    "SyncProtocolError",
    "SyncRateLimited",
    "SyncServerError",
    "SyncTimeout",
    "SyncTransportError",
    "SyncUnauthorized",
    "SyncUnexpectedStatus",
]

T = TypeVar("T")
Order = Literal["ASC", "DESC"]

USER_AGENT = f"chroma-sync-bridge/{__version__}"
_REDACTED = "[redacted]"
# Raised before a byte of the request left this process: the server cannot have acted on it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

_SOURCE = TypeAdapter(Source)
_SOURCES = TypeAdapter(list[Source])
_INVOCATION = TypeAdapter(Invocation)
_INVOCATIONS = TypeAdapter(list[Invocation])
_CREATED_SOURCE = TypeAdapter(CreatedSource)
_CREATED_INVOCATION = TypeAdapter(CreatedInvocation)


class SyncClient:
    """Chroma Sync's sources and invocations; one method per documented endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        source_body_shape: Literal["flat", "nested"] = "flat",
    ) -> None:
        if not token:
            raise ValueError("a Chroma Cloud API key is required")
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._owns_client = client is None
        # Our own lean transport is called directly (see _request); None with a caller's client, or
        # when a proxy is configured (httpx's own transport then, through the client).
        self._lean = default_transport() if client is None else None
        self._client = (
            client if client is not None else httpx.AsyncClient(timeout=timeout, transport=self._lean)
        )
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._source_body_shape = source_body_shape

    def __repr__(self) -> str:
        return f"SyncClient(base_url={self._base_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # Sources

    async def create_source(
        self,
        *,
        database_name: str,
        repository: str,
        app_id: str | None = None,
        include_globs: Sequence[str] | None = None,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    ) -> str:
        """Create a GitHub source and return its id; :class:`SyncConflict` when it exists already."""
        github: dict[str, Any] = {"repository": repository}
        if app_id is not None:
            github["app_id"] = app_id
        if include_globs is not None:
            github["include_globs"] = list(include_globs)
        body: dict[str, Any] = {"database_name": database_name, "github": github}
        if self._source_body_shape == "nested":
            body["embedding"] = {"dense": {"model": embedding_model}}
        else:
            body["embedding_model"] = embedding_model
        response = await self._request("POST", "/api/v1/sources", json=body)
        return self._parse(_CREATED_SOURCE, response).source_id

    async def get_source(self, source_id: str) -> Source:
        response = await self._request("GET", f"/api/v1/sources/{_segment(source_id)}")
        return self._parse(_SOURCE, response)

    async def list_sources(
        self,
        *,
        database_name: str | None = None,
        source_type: str | None = None,
        app_id: str | None = None,
        repository: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        order_by: Order | None = None,
    ) -> list[Source]:
        """One page of sources, newest first unless ``order_by="ASC"``."""
        params = _github_filters(source_type, app_id, repository)
        params.update(database_name=database_name, limit=limit, offset=offset, order_by=order_by)
        response = await self._request("GET", "/api/v1/sources", params=params)
        return self._parse(_SOURCES, response)

    async def delete_source(self, source_id: str) -> None:
        """Delete a source; its running invocations carry on."""
        await self._request("DELETE", f"/api/v1/sources/{_segment(source_id)}")

    # Invocations

    async def create_invocation(
        self, source_id: str, *, collection: str, sha: str | None = None, branch: str | None = None
    ) -> str:
        """Start syncing ``sha`` (or the head of ``branch``) into ``collection``; return the invocation id.

        :class:`SyncConflict` means the collection already holds finished synced data.
        """
        try:
            ref = GitRef(sha=sha, branch=branch)
        except ValidationError:
            raise ValueError("give exactly one of sha and branch") from None
        body = {"target_collection_name": collection, "ref_identifier": ref.as_body()}
        path = f"/api/v1/sources/{_segment(source_id)}/invocations"
        response = await self._request("POST", path, json=body)
        return self._parse(_CREATED_INVOCATION, response).invocation_id

    async def get_invocation(self, invocation_id: str) -> Invocation:
        response = await self._request("GET", f"/api/v1/invocations/{_segment(invocation_id)}")
        return self._parse(_INVOCATION, response)

    async def list_invocations(
        self,
        *,
        source_id: str | None = None,
        database_name: str | None = None,
        status: JobState | None = None,
        source_type: str | None = None,
        app_id: str | None = None,
        repository: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        order_by: Order | None = None,
    ) -> list[Invocation]:
        """One page of invocations, newest first unless ``order_by="ASC"``."""
        params = _github_filters(source_type, app_id, repository)
        params.update(
            source_id=source_id,
            database_name=database_name,
            status=status,
            limit=limit,
            offset=offset,
            order_by=order_by,
        )
        response = await self._request("GET", "/api/v1/invocations", params=params)
        return self._parse(_INVOCATIONS, response)

    async def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel a pending invocation; :class:`SyncPreconditionFailed` once it is no longer pending."""
        await self._request("PUT", f"/api/v1/invocations/{_segment(invocation_id)}")

    async def find_invocation(
        self, source_id: str, *, collection: str, page_size: int = 100, max_pages: int = 20
    ) -> Invocation | None:
        """The newest invocation of ``source_id`` writing to ``collection``, or None.

        This is how a create whose answer was lost is recovered. Pages newest first; invocations created
        while paging shift later pages, so one may be seen twice but none is skipped.
        """
        for page in range(max_pages):
            invocations = await self.list_invocations(
                source_id=source_id, order_by="DESC", limit=page_size, offset=page * page_size
            )
            for invocation in invocations:
                if invocation.metadata.collection_name == collection:
                    return invocation
            if len(invocations) < page_size:
                break
        return None

    # Transport

    async def _request(
        self, method: str, path: str, *, params: Mapping[str, object] | None = None, json: object = None
    ) -> httpx.Response:
        """Send one request; a non-2xx answer or a transport failure becomes a :class:`SyncError`."""
        query = {key: str(value) for key, value in (params or {}).items() if value is not None}
        try:
            if self._lean is not None:
                # Straight to the transport: the client's layers in between (URL and header merging,
                # a cookie jar that builds a urllib Request per response, auth and redirect loops)
                # cost as much CPU per call as the transport itself and do nothing for these calls:
                # no cookies, no redirects followed, headers and timeouts set here (bench/HISTORY.md,
                # seventh round). A caller's own client is used as a client.
                request = httpx.Request(
                    method,
                    self._base_url + path,
                    params=query,
                    json=json,
                    headers=self._headers(),
                    extensions=self._extensions,
                )
                response = await self._lean.handle_async_request(request)
            else:
                response = await self._client.request(
                    method, self._base_url + path, params=query, json=json, headers=self._headers()
                )
        except httpx.TimeoutException as exc:
            raise SyncTimeout(
                self._redact(_describe(exc)), method=method, path=path, outcome_unknown=not _never_sent(exc)
            ) from None
        except httpx.RequestError as exc:
            raise SyncTransportError(
                self._redact(_describe(exc)), method=method, path=path, outcome_unknown=not _never_sent(exc)
            ) from None
        if response.is_success:
            return response
        raise error_from_response(
            method=method,
            path=path,
            status=response.status_code,
            headers=response.headers,
            body=self._redact(response.text),
            now=datetime.now(UTC),
        )

    def _parse(self, adapter: TypeAdapter[T], response: httpx.Response) -> T:
        """The typed body of a 2xx answer; :class:`SyncProtocolError` when it does not match."""
        request = response.request
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            detail = f"{response.status_code}: {where}: {first['msg']} ({exc.error_count()} errors)"
            raise SyncProtocolError(
                self._redact(detail), method=request.method, path=request.url.path
            ) from None

    def _headers(self) -> dict[str, str]:
        # Built inline at the call: no local variable holds the token for a traceback to show.
        return {"x-chroma-token": self._token, "user-agent": USER_AGENT, "accept": "application/json"}

    def _redact(self, text: str) -> str:
        return text.replace(self._token, _REDACTED)


def _github_filters(source_type: str | None, app_id: str | None, repository: str | None) -> dict[str, object]:
    """Sync requires ``source_type=github`` next to any ``github.*`` filter: add it when left out."""
    if source_type is None and (app_id is not None or repository is not None):
        source_type = "github"
    return {"source_type": source_type, "github.app_id": app_id, "github.repository": repository}


def _segment(value: str) -> str:
    """An id as one path segment: a stray ``/`` or ``?`` cannot reach another endpoint."""
    return quote(value, safe="")


def _never_sent(exc: httpx.RequestError) -> bool:
    return isinstance(exc, _NOT_SENT)


def _describe(exc: httpx.RequestError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
