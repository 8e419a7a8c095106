"""Routes: which pushes go to which Chroma Sync source, and into which collection.

A route names a repository pattern, the branches it watches, one source (an existing ``source_id`` or a
described ``source`` the bridge finds or creates per repository) and a collection name template.
Every route a push matches gets its own job, in file order.

Patterns (the same rules as GitHub Actions' branch filters, minus ``+``, ``!`` and ``?`` as a quantifier):

=========== ========================================================================================
``*``       any run of characters except ``/``: ``acme/*`` matches ``acme/api``, not ``acme/x/y``;
            ``release/*`` matches ``release/1.2``, not ``release/1/2``
``**``      any run of characters, ``/`` included (branches only): ``release/**`` matches
            ``release/1/2``; ``**`` matches every branch
``?``       one character except ``/``
``[...]``   one character from the set (``[a-z]``, ``[!0-9]`` negates); never ``/``
=========== ========================================================================================

Repository patterns are ``owner/name`` and match case-insensitively, as GitHub does; branch patterns
match case-sensitively, as git does. A route without ``branches`` watches the repository's default
branch (from the push payload).

``RouteTable`` indexes its routes once (see its docstring) and compiles every pattern once, so routing
one push through 10,000 routes costs microseconds (``bench/routing.py``).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.core.errors import ConfigError, RoutesError
from bridge.core.naming import DEFAULT_COLLECTION_TEMPLATE, validate_template

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-Embedding-0.6B"

ROUTE_KEYS = ("repository", "branches", "source_id", "source", "collection")
SOURCE_KEYS = ("database_name", "include_globs", "app_id", "embedding_model")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GLOB_CHARS = frozenset("*?[")
_REPOSITORY_CHARS = re.compile(r"[A-Za-z0-9._/-]")  # "/" is checked apart: exactly one
_EXACT_REPOSITORY = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:\\]")  # what git refuses in a ref name, less globs


class _GlobError(ValueError):
    """A glob pattern is malformed."""


def _unknown_key(key: object, known: Sequence[str]) -> str:
    hint = difflib.get_close_matches(str(key), known, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key {key!r} (expected {', '.join(known)}){suggestion}"


# ---------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A described source: the bridge finds or creates one such Chroma Sync source per repository."""

    database_name: str
    include_globs: tuple[str, ...] | None = None
    app_id: str | None = None
    embedding_model: str = DEFAULT_EMBEDDING_MODEL

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces, ``None`` fields left out); the source key hashes it."""
        data: dict[str, Any] = {"database_name": self.database_name, "embedding_model": self.embedding_model}
        if self.include_globs is not None:
            data["include_globs"] = list(self.include_globs)
        if self.app_id is not None:
            data["app_id"] = self.app_id
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> SourceSpec:
        """Read back ``to_json``'s output; raise ``RoutesError`` for anything else."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RoutesError("source spec is not valid JSON") from exc
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: object) -> SourceSpec:
        """Build a spec from a routes file's ``source`` mapping; raise ``RoutesError`` naming the problem."""
        if not isinstance(data, Mapping):
            raise RoutesError("source must be a mapping with database_name (and include_globs, app_id)")
        for key in data:
            if key not in SOURCE_KEYS:
                raise RoutesError(f"source: {_unknown_key(key, SOURCE_KEYS)}")
        if "database_name" not in data:
            raise RoutesError("source: database_name is missing")
        database = _text(data["database_name"], "source.database_name")
        globs: tuple[str, ...] | None = None
        if "include_globs" in data:
            raw = data["include_globs"]
            if not isinstance(raw, list) or not raw:
                raise RoutesError(
                    "source.include_globs must be a non-empty list of globs (omit it to include every file)"
                )
            globs = tuple(_text(glob, f"source.include_globs[{i}]") for i, glob in enumerate(raw))
        app_id = _text(data["app_id"], "source.app_id") if "app_id" in data else None
        model = (
            _text(data["embedding_model"], "source.embedding_model")
            if "embedding_model" in data
            else DEFAULT_EMBEDDING_MODEL
        )
        return cls(database_name=database, include_globs=globs, app_id=app_id, embedding_model=model)

    def key(self, repository: str) -> str:
        """``spec:<16 hex of sha256(to_json)>:<repository in lower case>``: one source per repository."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return f"spec:{digest}:{repository.lower()}"


def _text(value: object, what: str) -> str:
    if isinstance(value, str) and value.strip() == value and value:
        return value
    if isinstance(value, str):
        raise RoutesError(f"{what} must not be empty or start or end with spaces")
    raise RoutesError(f"{what} must be a string, not {_kind(value)}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value}; quote it)"
    if isinstance(value, int | float):
        return f"a number ({value}; quote it)"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__


# ------------------------------------------------------------------------------------------------ globs


def _translate(pattern: str, *, double_star: bool, literal: re.Pattern[str] | None) -> str:
    """Translate one glob into a regular expression; raise ``_GlobError`` for a malformed one."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            if j - i == 1:
                out.append("[^/]*")
            elif double_star:
                out.append(".*")
            else:
                raise _GlobError("'**' is only for branch patterns; '*' already matches any owner or name")
            i = j
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            j = i + 1
            negate = j < n and pattern[j] == "!"
            if negate:
                j += 1
            start = j
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise _GlobError("'[' is not closed by ']'")
            out.append(_char_class(pattern[start:j], negate=negate, literal=literal))
            i = j + 1
        else:
            if literal is not None and not literal.fullmatch(char):
                raise _GlobError(f"{char!r} cannot occur in a repository name")
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _char_class(body: str, *, negate: bool, literal: re.Pattern[str] | None) -> str:
    items: list[str] = []
    k = 0
    while k < len(body):
        low = body[k]
        is_range = k + 2 < len(body) and body[k + 1] == "-"
        high = body[k + 2] if is_range else low
        if low > high:
            raise _GlobError(f"'[{body}]' has the reversed range {low}-{high}")
        if low <= "/" <= high:
            raise _GlobError(f"'[{body}]' would match '/'")
        for char in (low, high):
            if literal is not None and not literal.fullmatch(char):
                raise _GlobError(f"{char!r} cannot occur in a repository name")
        items.append(f"{re.escape(low)}-{re.escape(high)}" if is_range else re.escape(low))
        k += 3 if is_range else 1
    return f"[^/{''.join(items)}]" if negate else f"[{''.join(items)}]"


def _check_repository(pattern: str) -> None:
    """Raise ``_GlobError`` unless ``pattern`` is a valid ``owner/name`` pattern (without compiling it)."""
    if not _EXACT_REPOSITORY.fullmatch(pattern):
        _repository_source(pattern)


@functools.lru_cache(maxsize=65536)
def _repository_source(pattern: str) -> str:
    """The regular expression of an ``owner/name`` pattern, matched against lower-cased names."""
    owner, slash, name = pattern.partition("/")
    if not slash or not owner or not name or "/" in name:
        raise _GlobError("must be owner/name (globs allowed: acme/*)")
    return _translate(pattern.lower(), double_star=False, literal=_REPOSITORY_CHARS)


@functools.lru_cache(maxsize=65536)
def _repository_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_repository_source(pattern))


@functools.lru_cache(maxsize=65536)
def _branch_regex(pattern: str) -> re.Pattern[str]:
    """Compile a branch pattern (``*`` within a path segment, ``**`` across); raise ``_GlobError``."""
    if not pattern:
        raise _GlobError("a branch pattern must not be empty")
    if pattern.startswith("refs/"):
        raise _GlobError("write the branch name without refs/heads/")
    if pattern.startswith("!"):
        raise _GlobError("negated patterns ('!') are not supported")
    bad = _BRANCH_FORBIDDEN.search(pattern)
    if bad:
        raise _GlobError(f"{bad.group()!r} cannot occur in a branch name")
    if ".." in pattern or "@{" in pattern:
        raise _GlobError("'..' and '@{' cannot occur in a branch name")
    return re.compile(_translate(pattern, double_star=True, literal=None))


def _is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


# ----------------------------------------------------------------------------------------------- routes


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the routes file. Build it with ``Route.build``, which validates and names it."""

    repository: str  # pattern as written: owner/name or a glob such as acme/*; case-insensitive
    branches: tuple[str, ...] | None  # glob patterns; None = the repository's default branch
    source_id: str | None  # an existing Chroma Sync source (lower-case UUID) ...
    source: SourceSpec | None  # ... or a described one: exactly one of the two is set
    collection: str  # collection name template, see bridge.core.naming
    line: int  # line in the routes file, 0 if unknown
    name: str  # fingerprint: the {route} placeholder and part of lane keys

    @classmethod
    def build(
        cls,
        *,
        repository: str,
        branches: Sequence[str] | None = None,
        source_id: str | None = None,
        source: SourceSpec | None = None,
        collection: str = DEFAULT_COLLECTION_TEMPLATE,
        line: int = 0,
    ) -> Route:
        """Validate one route and compute its ``name``; raise ``RoutesError`` naming the problem."""
        try:
            _check_repository(repository)
        except _GlobError as exc:
            raise RoutesError(f"repository {repository!r}: {exc}") from None
        if isinstance(branches, str):  # a str is a Sequence[str] too: "main" would be four patterns
            raise RoutesError("branches must be a list of branch patterns, not a string")
        if branches is not None:
            if not branches:
                raise RoutesError("branches is empty (omit it to watch the default branch)")
            for branch in branches:
                try:
                    _branch_regex(branch)
                except _GlobError as exc:
                    raise RoutesError(f"branch pattern {branch!r}: {exc}") from None
            seen = [b for i, b in enumerate(branches) if b in branches[:i]]
            if seen:
                raise RoutesError(f"branches lists {seen[0]!r} twice")
        if (source_id is None) == (source is None):
            raise RoutesError("give exactly one of source_id and source")
        if source_id is not None:
            if not _UUID.fullmatch(source_id):
                raise RoutesError(f"source_id {source_id!r} is not a UUID (as Chroma Sync source ids are)")
            source_id = source_id.lower()
        try:
            validate_template(collection)
        except ConfigError as exc:
            raise RoutesError(exc.detail) from None
        branch_tuple = tuple(branches) if branches is not None else None
        identity = _identity(repository, branch_tuple, source_id, source, collection)
        return cls(
            repository=repository,
            branches=branch_tuple,
            source_id=source_id,
            source=source,
            collection=collection,
            line=line,
            name=hashlib.sha256(identity.encode()).hexdigest()[:12],
        )

    def source_key(self, repository: str) -> str:
        """The source this route indexes ``repository`` with: ``id:<uuid>`` or ``SourceSpec.key``."""
        if self.source is not None:
            return self.source.key(repository)
        return f"id:{self.source_id}"

    @property
    def identity(self) -> str:
        """What makes two routes the same: pattern (any case), branch set, source and template."""
        return _identity(self.repository, self.branches, self.source_id, self.source, self.collection)


def _identity(
    repository: str,
    branches: tuple[str, ...] | None,
    source_id: str | None,
    source: SourceSpec | None,
    collection: str,
) -> str:
    return json.dumps(
        {
            "repository": repository.lower(),
            "branches": sorted(branches) if branches is not None else None,
            "source_id": source_id,
            "source": source.to_json() if source is not None else None,
            "collection": collection,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(frozen=True, slots=True)
class _BranchMatcher:
    literals: frozenset[str]
    pattern: re.Pattern[str] | None  # every glob of the route in one alternation

    def __call__(self, branch: str) -> bool:
        return branch in self.literals or (
            self.pattern is not None and self.pattern.fullmatch(branch) is not None
        )


@functools.lru_cache(maxsize=65536)
def _branch_matcher(branches: tuple[str, ...]) -> _BranchMatcher:
    regexes = {b: _branch_regex(b) for b in branches}  # validates literal names too
    globs = [regex.pattern for b, regex in regexes.items() if _is_glob(b)]
    pattern = re.compile("|".join(f"(?:{glob})" for glob in globs)) if globs else None
    return _BranchMatcher(literals=frozenset(b for b in branches if not _is_glob(b)), pattern=pattern)


_Candidate = tuple[int, re.Pattern[str]]
_ANY_OWNER = None  # the owner key of globs whose owner part is itself a glob


def _literal_prefix(text: str) -> str:
    """The part of a glob before its first glob character."""
    for position, char in enumerate(text):
        if char in _GLOB_CHARS:
            return text[:position]
    return text


class RouteTable:
    """Routes in file order, indexed for matching; a delivery's routing costs a few dict look-ups.

    Exact ``owner/name`` routes sit in a dict. A glob route sits in a bucket keyed by its owner (``None``
    when the owner is a glob) and the literal start of its name: ``acme/svc-*`` under
    ``("acme", "svc-")``, ``*/api`` under ``(None, "api")``, ``*/*`` under ``(None, "")``. A lookup
    tries, for its owner and for ``None``, only the prefix lengths that occur in the table, and runs
    the compiled regular expressions of the few routes it finds.
    """

    __slots__ = ("_branch", "_by_name", "_exact", "_globs", "_lengths", "routes")

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._exact: dict[str, list[int]] = {}
        self._globs: dict[tuple[str | None, str], list[_Candidate]] = {}
        self._lengths: dict[str | None, tuple[int, ...]] = {}  # owner key -> prefix lengths, ascending
        self._by_name: dict[str, int] = {}
        self._branch: list[_BranchMatcher | None] = []
        lengths: dict[str | None, set[int]] = {}
        for index, route in enumerate(self.routes):
            earlier = self._by_name.setdefault(route.name, index)
            if earlier != index:
                raise RoutesError(
                    f"{_place(route, index)}: has the same name {route.name!r} as the route at "
                    f"{_place(self.routes[earlier], earlier)}"
                )
            lowered = route.repository.lower()
            try:
                _check_repository(route.repository)
                self._branch.append(_branch_matcher(route.branches) if route.branches is not None else None)
            except _GlobError as exc:
                raise RoutesError(f"{_place(route, index)}: {exc}") from None
            if not _is_glob(lowered):
                self._exact.setdefault(lowered, []).append(index)
                continue
            regex = _repository_regex(route.repository)
            owner, _, repo = lowered.partition("/")
            owner_key = _ANY_OWNER if _is_glob(owner) else owner
            prefix = _literal_prefix(repo)
            self._globs.setdefault((owner_key, prefix), []).append((index, regex))
            lengths.setdefault(owner_key, set()).add(len(prefix))
        self._lengths = {owner_key: tuple(sorted(found)) for owner_key, found in lengths.items()}

    def __len__(self) -> int:
        return len(self.routes)

    def get(self, name: str) -> Route | None:
        """The route with this ``name`` (fingerprint), if the table has it."""
        index = self._by_name.get(name)
        return self.routes[index] if index is not None else None

    def match(self, repository: str, branch: str, *, default_branch: str) -> list[Route]:
        """Every route that matches a push of ``branch`` to ``repository`` (``owner/name``), in file order.

        ``default_branch`` is the repository's default branch from the payload: routes without
        ``branches`` match it alone.
        """
        lowered = repository.lower()
        owner, _, repo = lowered.partition("/")
        indexes = list(self._exact.get(lowered, ()))
        for owner_key in (owner, _ANY_OWNER):
            for length in self._lengths.get(owner_key, ()):
                if length > len(repo):
                    break
                for index, regex in self._globs.get((owner_key, repo[:length]), ()):
                    if regex.fullmatch(lowered):
                        indexes.append(index)
        if len(indexes) > 1:
            indexes.sort()
        matched: list[Route] = []
        for index in indexes:
            matcher = self._branch[index]
            if branch == default_branch if matcher is None else matcher(branch):
                matched.append(self.routes[index])
        return matched


# -------------------------------------------------------------------------------------------- documents


def parse_routes(document: object, *, lines: Sequence[int] = (), filename: str | None = None) -> RouteTable:
    """Validate a loaded routes document (``{"routes": [...]}``) into a ``RouteTable``.

    ``lines[i]`` is the 1-based line of route ``i`` in the file. A problem raises ``RoutesError`` whose
    detail is ``line N: <what is wrong>`` (``route N: ...`` when the line is unknown), or
    ``<filename>:N: <what is wrong>`` when ``filename`` is given. Rejected: unknown keys, a missing
    repository, both or neither of source_id and source, wrong types, an empty branches list, malformed
    globs, bad templates, a source_id that is not a UUID, a route given twice, and two described-source
    routes that would write the same collections into the same database.
    """
    if not isinstance(document, Mapping) or "routes" not in document:
        raise _located("the document must be a mapping with a 'routes' list", filename=filename)
    for key in document:
        if key != "routes":
            raise _located(_unknown_key(key, ("routes",)), filename=filename)
    items = document["routes"]
    if not isinstance(items, list):
        raise _located(f"routes must be a list of routes, not {_kind(items)}", filename=filename)
    routes: list[Route] = []
    seen: dict[str, int] = {}  # identity -> index
    databases: dict[tuple[str, ...], int] = {}  # what decides a described source's names -> index
    for index, item in enumerate(items):
        line = lines[index] if index < len(lines) else 0
        try:
            route = _parse_route(item, line=line)
        except RoutesError as exc:
            raise _located(exc.detail, filename=filename, line=line, index=index) from None
        earlier = seen.setdefault(route.identity, index)
        if earlier != index:
            raise _located(
                f"repeats the route at {_place(routes[earlier], earlier)}",
                filename=filename,
                line=line,
                index=index,
            )
        if route.source is not None and "{route}" not in route.collection:
            key = (
                route.repository.lower(),
                json.dumps(sorted(route.branches) if route.branches is not None else None),
                route.source.database_name,
                route.collection,
            )
            earlier = databases.setdefault(key, index)
            if earlier != index:
                raise _located(
                    f"writes the same collections into the same database as the route at "
                    f"{_place(routes[earlier], earlier)}; add {{route}} to one collection template",
                    filename=filename,
                    line=line,
                    index=index,
                )
        routes.append(route)
    return RouteTable(routes)  # refuses two routes whose 48-bit names collide: never seen, never silent


def _place(route: Route, index: int) -> str:
    return f"line {route.line}" if route.line else f"route {index + 1}"


def _located(
    problem: str | None, *, filename: str | None, line: int = 0, index: int | None = None
) -> RoutesError:
    """``file:12: problem`` (``line 12: problem`` without a file name), ``file: route 3: problem``."""
    if line:
        where = f"{filename}:{line}" if filename else f"line {line}"
    elif index is not None:
        where = f"{filename}: route {index + 1}" if filename else f"route {index + 1}"
    else:
        where = filename or ""
    return RoutesError(f"{where}: {problem}" if where else problem)


def _parse_route(item: object, *, line: int) -> Route:
    if not isinstance(item, Mapping):
        raise RoutesError(
            f"a route must be a mapping with repository and source_id or source, not {_kind(item)}"
        )
    for key in item:
        if key not in ROUTE_KEYS:
            raise RoutesError(_unknown_key(key, ROUTE_KEYS))
    if "repository" not in item:
        raise RoutesError("repository is missing")
    repository = _text(item["repository"], "repository")
    branches: list[str] | None = None
    if "branches" in item:
        raw = item["branches"]
        if not isinstance(raw, list):
            raise RoutesError(
                f"branches must be a list of branch patterns, not {_kind(raw)} "
                "(omit it to watch the default branch)"
            )
        branches = [_text(branch, f"branches[{i}]") for i, branch in enumerate(raw)]
    source_id = _text(item["source_id"], "source_id") if "source_id" in item else None
    source = SourceSpec.from_mapping(item["source"]) if "source" in item else None
    collection = (
        _text(item["collection"], "collection") if "collection" in item else DEFAULT_COLLECTION_TEMPLATE
    )
    return Route.build(
        repository=repository,
        branches=branches,
        source_id=source_id,
        source=source,
        collection=collection,
        line=line,
    )
