"""Routes: validation, pattern semantics, the indexed table and its file order."""

from __future__ import annotations

import datetime
import fnmatch
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.errors import RoutesError
from bridge.core.naming import DEFAULT_COLLECTION_TEMPLATE
from bridge.core.routing import (
    DEFAULT_EMBEDDING_MODEL,
    Route,
    RouteTable,
    SourceSpec,
    parse_routes,
)

UUID = "5d6c1f0e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"
OTHER_UUID = "00000000-0000-4000-8000-000000000000"


def route(repository: str = "acme/api", branches: list[str] | None = None, **kwargs: Any) -> Route:
    if "source" not in kwargs:
        kwargs.setdefault("source_id", UUID)
    return Route.build(repository=repository, branches=branches, **kwargs)


def names(routes: list[Route]) -> list[str]:
    return [r.repository for r in routes]


def matches_repository(pattern: str, repository: str) -> bool:
    return bool(RouteTable([route(pattern, ["**"])]).match(repository, "main", default_branch="main"))


def matches_branch(pattern: str, branch: str) -> bool:
    return bool(RouteTable([route("acme/api", [pattern])]).match("acme/api", branch, default_branch="main"))


def document(*items: object) -> dict[str, Any]:
    return {"routes": list(items)}


# ------------------------------------------------------------------------------------------- sources


def test_source_spec_json_is_canonical() -> None:
    """to_json sorts keys, drops spaces and leaves out fields that are None."""
    assert SourceSpec(database_name="code").to_json() == (
        f'{{"database_name":"code","embedding_model":"{DEFAULT_EMBEDDING_MODEL}"}}'
    )
    full = SourceSpec(database_name="db", include_globs=("**/*.py",), app_id="app", embedding_model="m")
    assert (
        full.to_json()
        == '{"app_id":"app","database_name":"db","embedding_model":"m","include_globs":["**/*.py"]}'
    )


@pytest.mark.parametrize(
    "spec",
    [
        SourceSpec(database_name="code"),
        SourceSpec(database_name="d", include_globs=("a", "b/**"), app_id="x", embedding_model="m"),
        SourceSpec(database_name="données", include_globs=("*.md",)),
    ],
)
def test_source_spec_round_trips_through_json(spec: SourceSpec) -> None:
    """from_json reads back what to_json wrote."""
    assert SourceSpec.from_json(spec.to_json()) == spec


def test_source_spec_from_json_refuses_bad_json() -> None:
    """Text that is not JSON raises RoutesError."""
    with pytest.raises(RoutesError, match="not valid JSON"):
        SourceSpec.from_json("{database_name")


def test_source_key_hashes_the_spec_and_lowers_the_repository() -> None:
    """key() is spec:<16 hex>:<repository in lower case>, different for different specs."""
    spec = SourceSpec(database_name="code")
    key = spec.key("Acme/API")
    assert re.fullmatch(r"spec:[0-9a-f]{16}:acme/api", key)
    assert key == spec.key("acme/api")
    assert key != SourceSpec(database_name="code", app_id="x").key("acme/api")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("code", "source must be a mapping"),
        ({"database": "code"}, "unknown key 'database' (expected database_name, include_globs, app_id, "),
        ({"database": "code"}, "did you mean 'database_name'?"),
        ({"app_id": "x"}, "database_name is missing"),
        ({"database_name": ""}, "source.database_name must not be empty"),
        ({"database_name": " code"}, "source.database_name must not be empty or start or end with spaces"),
        ({"database_name": 7}, "source.database_name must be a string, not a number (7; quote it)"),
        ({"database_name": "c", "include_globs": []}, "include_globs must be a non-empty list"),
        ({"database_name": "c", "include_globs": "*.py"}, "include_globs must be a non-empty list"),
        ({"database_name": "c", "include_globs": ["a", None]}, "include_globs[1] must be a string, not null"),
        (
            {"database_name": "c", "app_id": True},
            "source.app_id must be a string, not a boolean (True; quote it)",
        ),
        ({"database_name": "c", "embedding_model": ["m"]}, "embedding_model must be a string, not a list"),
    ],
)
def test_source_mapping_problems_are_named(source: object, problem: str) -> None:
    """Each malformed source mapping raises RoutesError saying what is wrong."""
    with pytest.raises(RoutesError, match=re.escape(problem)):
        SourceSpec.from_mapping(source)


def test_source_mapping_reads_every_field() -> None:
    """database_name, include_globs, app_id and embedding_model are all read."""
    spec = SourceSpec.from_mapping(
        {"database_name": "d", "include_globs": ["*.py"], "app_id": "a", "embedding_model": "m"}
    )
    assert spec == SourceSpec(database_name="d", include_globs=("*.py",), app_id="a", embedding_model="m")


# -------------------------------------------------------------------------------------------- routes


def test_route_build_fills_defaults() -> None:
    """A route without branches or collection watches the default branch with the default template."""
    built = route()
    assert built.branches is None
    assert built.collection == DEFAULT_COLLECTION_TEMPLATE
    assert built.line == 0
    assert re.fullmatch(r"[0-9a-f]{12}", built.name)


def test_route_name_is_stable() -> None:
    """The fingerprint of a route never changes between releases (lane keys and {route} use it)."""
    assert route().name == "4fcf9c725119"


def test_route_name_ignores_line_branch_order_and_repository_case() -> None:
    """Moving a route, reordering its branches or changing the case of its owner keeps its name."""
    assert route("acme/api", ["main", "dev"], line=3).name == route("ACME/Api", ["dev", "main"], line=9).name


@pytest.mark.parametrize(
    "changed",
    [
        {"repository": "acme/web"},
        {"branches": ["main"]},
        {"source_id": OTHER_UUID},
        {"source": SourceSpec(database_name="code"), "source_id": None},
        {"collection": "{repo}-{sha12}"},
    ],
)
def test_route_name_changes_with_what_the_route_does(changed: dict[str, Any]) -> None:
    """Repository, branches, source and template are all part of the fingerprint."""
    base: dict[str, Any] = {"repository": "acme/api", "branches": None, "source_id": UUID}
    assert Route.build(**{**base, **changed}).name != Route.build(**base).name


def test_source_id_is_lower_cased() -> None:
    """A source id in upper case is the same source as in lower case."""
    assert route(source_id=UUID.upper()).source_id == UUID
    assert route(source_id=UUID.upper()).name == route().name


def test_source_key_of_an_existing_source() -> None:
    """A route with source_id keys its source as id:<uuid>."""
    assert route().source_key("acme/api") == f"id:{UUID}"


def test_source_key_of_a_described_source() -> None:
    """A route with a described source keys it per repository."""
    spec = SourceSpec(database_name="code")
    assert route("acme/*", source=spec).source_key("Acme/Web") == spec.key("acme/web")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"branches": []}, "branches is empty"),
        ({"branches": "main"}, "branches must be a list of branch patterns, not a string"),
        ({"branches": ["main", "dev", "main"]}, "branches lists 'main' twice"),
        ({"source_id": None}, "give exactly one of source_id and source"),
        ({"source": SourceSpec(database_name="c")}, "give exactly one of source_id and source"),
        ({"source_id": "my-source"}, "source_id 'my-source' is not a UUID"),
        ({"source_id": UUID + "0"}, "is not a UUID"),
        ({"collection": "{repo}"}, "must contain {sha}"),
        ({"collection": "{repo}-{sha12}-{nope}"}, "unknown placeholder {nope}"),
    ],
)
def test_route_problems_are_named(kwargs: dict[str, Any], problem: str) -> None:
    """Each invalid route raises RoutesError saying what is wrong."""
    base: dict[str, Any] = {"repository": "acme/api", "source_id": UUID, **kwargs}
    with pytest.raises(RoutesError, match=re.escape(problem)):
        Route.build(**base)


# ---------------------------------------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("pattern", "repository", "expected"),
    [
        ("acme/api", "acme/api", True),
        ("acme/api", "ACME/Api", True),
        ("ACME/API", "acme/api", True),
        ("acme/api", "acme/api2", False),
        ("acme/*", "acme/api", True),
        ("acme/*", "Acme/Web", True),
        ("acme/*", "acme/x/y", False),
        ("acme/*", "other/api", False),
        ("acme/svc-*", "acme/svc-auth", True),
        ("acme/svc-*", "acme/api", False),
        ("*/api", "anyone/api", True),
        ("*/api", "anyone/web", False),
        ("*/*", "anyone/anything", True),
        ("*/svc-*", "x/svc-a", True),
        ("acme/api-?", "acme/api-1", True),
        ("acme/api-?", "acme/api-12", False),
        ("acme/[ab]pi", "acme/api", True),
        ("acme/[ab]pi", "acme/cpi", False),
        ("acme/[!a]pi", "acme/bpi", True),
        ("acme/[!a]pi", "acme/api", False),
        ("acme/[a-c]pi", "acme/bpi", True),
        ("acme/[A-C]pi", "acme/bpi", True),
        ("acme/[-.]x", "acme/.x", True),
        ("acme/a.i", "acme/abi", False),
        ("ac?e/*", "acme/api", True),
        ("a*/api", "acme/api", True),
    ],
)
def test_repository_patterns(pattern: str, repository: str, expected: bool) -> None:
    """Repository globs: * and ? stay within owner or name, [...] is a set, case does not matter."""
    assert matches_repository(pattern, repository) is expected


@pytest.mark.parametrize(
    ("pattern", "branch", "expected"),
    [
        ("main", "main", True),
        ("main", "Main", False),
        ("main", "main2", False),
        ("release/*", "release/1.2", True),
        ("release/*", "release/1/2", False),
        ("release/*", "release", False),
        ("release/**", "release/1/2", True),
        ("release/**", "release", False),
        ("**", "a/b/c", True),
        ("**", "main", True),
        ("**/hotfix", "a/b/hotfix", True),
        ("**/hotfix", "hotfix", False),
        ("feat*", "feature/x", False),
        ("feat**", "feature/x", True),
        ("v?", "v1", True),
        ("v?", "v12", False),
        ("v?", "v/", False),
        ("[a-c]*", "beta", True),
        ("[!a-c]*", "delta", True),
        ("[!a-c]*", "alpha", False),
        ("[!a]", "/", False),
        ("[]]x", "]x", True),
        ("[*]", "*", True),
        ("[*]", "a", False),
        ("a+b", "a+b", True),
        ("a+b", "aab", False),
        ("(x)", "(x)", True),
        ("dependabot/**", "dependabot/npm_and_yarn/lodash-4.17.21", True),
        ("fix-ü*", "fix-über", True),
    ],
)
def test_branch_patterns(pattern: str, branch: str, expected: bool) -> None:
    """Branch globs: * within a segment, ** across segments, ? one character, case matters."""
    assert matches_branch(pattern, branch) is expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("acme", "must be owner/name"),
        ("/api", "must be owner/name"),
        ("acme/", "must be owner/name"),
        ("acme/api/x", "must be owner/name"),
        ("acme/**", "'**' is only for branch patterns"),
        ("acme/a b", "' ' cannot occur in a repository name"),
        ("ac~me/api", "'~' cannot occur in a repository name"),
        ("acme/[a", "'[' is not closed by ']'"),
        ("acme/[z-a]", "reversed range z-a"),
        ("acme/[~]x", "'~' cannot occur in a repository name"),
        ("acme/[a-~]x", "'~' cannot occur in a repository name"),
    ],
)
def test_repository_pattern_problems_are_named(pattern: str, problem: str) -> None:
    """Each malformed repository pattern raises RoutesError saying what is wrong."""
    with pytest.raises(RoutesError, match=re.escape(f"repository {pattern!r}: ") + ".*" + re.escape(problem)):
        route(pattern)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "must not be empty"),
        ("refs/heads/main", "without refs/heads/"),
        ("!main", "negated patterns"),
        ("a b", "' ' cannot occur in a branch name"),
        ("a\tb", "'\\t' cannot occur in a branch name"),
        ("a~1", "'~' cannot occur"),
        ("a^", "'^' cannot occur"),
        ("a:b", "':' cannot occur"),
        ("a\\b", "'\\\\' cannot occur"),
        ("a..b", "'..' and '@{' cannot occur"),
        ("a@{1}", "'..' and '@{' cannot occur"),
        ("release/[0-9", "'[' is not closed by ']'"),
        ("[!]", "'[' is not closed by ']'"),
        ("[z-a]", "reversed range z-a"),
        ("[/]x", "would match '/'"),
        ("[+-0]x", "would match '/'"),
    ],
)
def test_branch_pattern_problems_are_named(pattern: str, problem: str) -> None:
    """Each malformed branch pattern raises RoutesError saying what is wrong."""
    with pytest.raises(
        RoutesError, match=re.escape(f"branch pattern {pattern!r}: ") + ".*" + re.escape(problem)
    ):
        route(branches=[pattern])


# ----------------------------------------------------------------------------------------------- table


def test_match_returns_every_matching_route_in_file_order() -> None:
    """Exact, owner-glob, name-glob and scanned routes come back in the order of the file."""
    table = RouteTable(
        [
            route("*/*", ["**"]),
            route("acme/api", ["main"]),
            route("acme/*", ["main"]),
            route("*/api", ["main"]),
            route("other/api", ["main"]),
            route("ACME/API", ["main"], collection="{repo}-{sha12}"),
        ]
    )
    assert names(table.match("acme/api", "main", default_branch="main")) == [
        "*/*",
        "acme/api",
        "acme/*",
        "*/api",
        "ACME/API",
    ]


def test_routes_without_branches_match_only_the_default_branch() -> None:
    """A route that omits branches follows the repository's default branch from the payload."""
    table = RouteTable([route("acme/*")])
    assert table.match("acme/api", "trunk", default_branch="trunk") == [table.routes[0]]
    assert table.match("acme/api", "main", default_branch="trunk") == []


def test_branch_lists_mix_literals_and_globs() -> None:
    """A branch matches a route when it equals a literal or matches any glob of the route."""
    table = RouteTable([route(branches=["main", "release/*", "hotfix-?"])])
    hits = [
        b
        for b in ("main", "release/2", "hotfix-1", "dev", "release/2/x")
        if table.match("acme/api", b, default_branch="x")
    ]
    assert hits == ["main", "release/2", "hotfix-1"]


def test_no_route_matches_an_unknown_repository() -> None:
    """A push to a repository no route names matches nothing."""
    table = RouteTable([route("acme/api"), route("acme/*"), route("*/web")])
    assert table.match("other/api", "main", default_branch="main") == []


def test_table_finds_routes_by_name() -> None:
    """get() returns the route with a fingerprint, or None."""
    first, second = route("acme/api"), route("acme/web")
    table = RouteTable([first, second])
    assert table.get(second.name) is second
    assert table.get("000000000000") is None
    assert len(table) == 2


def test_table_refuses_two_routes_with_one_name() -> None:
    """Two routes that share a fingerprint would share lanes: the table refuses them."""
    first = route()
    clash = Route(
        repository="acme/web",
        branches=None,
        source_id=UUID,
        source=None,
        collection=DEFAULT_COLLECTION_TEMPLATE,
        line=9,
        name=first.name,
    )
    with pytest.raises(
        RoutesError, match=r"line 9: has the same name '4fcf9c725119' as the route at route 1"
    ):
        RouteTable([first, clash])


@pytest.mark.parametrize(
    ("repository", "branches", "problem"),
    [
        ("acme", None, "route 1: must be owner/name"),
        ("acme/api", ("a b",), "route 1: ' ' cannot occur in a branch name"),
    ],
)
def test_table_refuses_hand_built_routes_with_bad_patterns(
    repository: str, branches: tuple[str, ...] | None, problem: str
) -> None:
    """Routes built without Route.build are still checked when the table compiles them."""
    bad = Route(
        repository=repository,
        branches=branches,
        source_id=UUID,
        source=None,
        collection=DEFAULT_COLLECTION_TEMPLATE,
        line=0,
        name="x",
    )
    with pytest.raises(RoutesError, match=re.escape(problem)):
        RouteTable([bad])


OWNERS = ["acme", "Acme", "other", "a-b"]
NAMES = ["api", "web", "svc-a", "svc-b", "x.y"]
PATTERNS = st.sampled_from(
    [f"{o}/{n}" for o in OWNERS for n in NAMES]
    + ["acme/*", "*/api", "*/*", "*/svc-*", "a*/s?c-[ab]", "[ao]*/[!w]*", "acme/svc-*", "?cme/*"]
    + ["*/x.y", "a-b/*", "*/svc-a*", "acme/w?b", "*/svc-a-long*", "[Aa]cme/api"]
)
BRANCH_RULES = st.sampled_from(
    [None, ("main",), ("dev", "main"), ("**",), ("release/*",), ("main", "release/*")]
)
BRANCHES = ["main", "dev", "release/1", "release/1/2", "trunk"]


def expected_branch(rule: tuple[str, ...] | None, branch: str, default: str) -> bool:
    if rule is None:
        return branch == default
    return any(
        p == "**"
        or p == branch
        or (p == "release/*" and branch.startswith("release/") and branch.count("/") == 1)
        for p in rule
    )


@given(
    rules=st.lists(st.tuples(PATTERNS, BRANCH_RULES), min_size=1, max_size=30, unique=True),
    repository=st.sampled_from([f"{o}/{n}" for o in [*OWNERS, "ACME", "zzz"] for n in NAMES]),
    branch=st.sampled_from(BRANCHES),
    default=st.sampled_from(["main", "trunk"]),
)
def test_indexed_match_equals_a_scan_of_every_route(
    rules: list[tuple[str, tuple[str, ...] | None]], repository: str, branch: str, default: str
) -> None:
    """The indexed table finds exactly the routes a linear fnmatch scan finds, in file order."""
    built = [route(p, list(b) if b else None, collection=f"c{i}-{{sha12}}") for i, (p, b) in enumerate(rules)]
    expected = [
        r
        for r in built
        if fnmatch.fnmatchcase(repository.lower(), r.repository.lower())
        and expected_branch(r.branches, branch, default)
    ]
    assert RouteTable(built).match(repository, branch, default_branch=default) == expected


# ------------------------------------------------------------------------------------------- documents

VALID: dict[Any, Any] = {"repository": "acme/api", "source_id": UUID}


def test_parse_routes_reads_every_field_with_lines() -> None:
    """A document becomes a table of routes that carry their line numbers."""
    table = parse_routes(
        document(
            {
                "repository": "acme/api",
                "branches": ["main", "release/*"],
                "source_id": UUID,
                "collection": "{repo}-{branch}-{sha12}",
            },
            {"repository": "acme/*", "source": {"database_name": "code", "include_globs": ["**/*.py"]}},
        ),
        lines=[2, 7],
    )
    first, second = table.routes
    assert (first.line, first.branches, first.source_id, first.collection) == (
        2,
        ("main", "release/*"),
        UUID,
        "{repo}-{branch}-{sha12}",
    )
    assert (second.line, second.branches, second.collection) == (7, None, DEFAULT_COLLECTION_TEMPLATE)
    assert second.source == SourceSpec(database_name="code", include_globs=("**/*.py",))


def test_parse_routes_accepts_an_empty_list() -> None:
    """routes: [] is a valid, empty table."""
    assert len(parse_routes({"routes": []})) == 0


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (None, "the document must be a mapping with a 'routes' list"),
        ([VALID], "the document must be a mapping with a 'routes' list"),
        ({"route": [VALID]}, "the document must be a mapping with a 'routes' list"),
        ({"routes": [VALID], "version": 1}, "unknown key 'version' (expected routes)"),
        ({"routes": None}, "routes must be a list of routes, not null"),
        ({"routes": {"a": VALID}}, "routes must be a list of routes, not a mapping"),
        ({"routes": "acme/api"}, "routes must be a list of routes, not a string"),
        (document("acme/api"), "route 1: a route must be a mapping"),
        (document({**VALID, "branch": "main"}), "route 1: unknown key 'branch'"),
        (document({**VALID, "branch": "main"}), "did you mean 'branches'?"),
        (document({7: "x", **VALID}), "route 1: unknown key 7"),
        (document({"source_id": UUID}), "route 1: repository is missing"),
        (document({**VALID, "repository": ["acme/api"]}), "repository must be a string, not a list"),
        (document({**VALID, "repository": "acme/api "}), "repository must not be empty or start or end"),
        (document({**VALID, "branches": "main"}), "branches must be a list of branch patterns, not a string"),
        (document({**VALID, "branches": None}), "branches must be a list of branch patterns, not null"),
        (document({**VALID, "branches": []}), "branches is empty"),
        (
            document({**VALID, "branches": ["main", 1.0]}),
            "branches[1] must be a string, not a number (1.0; quote it)",
        ),
        (
            document({**VALID, "branches": [True]}),
            "branches[0] must be a string, not a boolean (True; quote it)",
        ),
        (
            document({**VALID, "branches": [datetime.date(2024, 1, 2)]}),
            "branches[0] must be a string, not date",
        ),
        (document({**VALID, "source_id": 12}), "source_id must be a string, not a number"),
        (document({**VALID, "source": {"database_name": "c"}}), "give exactly one of source_id and source"),
        (document({"repository": "acme/api"}), "give exactly one of source_id and source"),
        (document({**VALID, "source_id": "abc"}), "source_id 'abc' is not a UUID"),
        (document({"repository": "acme/api", "source": "code"}), "source must be a mapping"),
        (document({**VALID, "collection": None}), "collection must be a string, not null"),
        (document({**VALID, "collection": "{repo}"}), "must contain {sha}"),
        (document(VALID, {**VALID, "source_id": UUID.upper()}), "route 2: repeats the route at route 1"),
    ],
)
def test_parse_routes_names_the_problem(doc: object, problem: str) -> None:
    """Each invalid document raises RoutesError saying where and what is wrong."""
    with pytest.raises(RoutesError, match=re.escape(problem)):
        parse_routes(doc)


def test_problems_carry_the_route_line() -> None:
    """A problem in route i is reported at lines[i]."""
    with pytest.raises(RoutesError) as raised:
        parse_routes(document(VALID, {**VALID, "branches": []}), lines=[3, 12])
    assert raised.value.detail == "line 12: branches is empty (omit it to watch the default branch)"


def test_problems_carry_the_file_name_and_line() -> None:
    """With a file name, a problem reads file:line: problem."""
    with pytest.raises(RoutesError) as raised:
        parse_routes(document(VALID, {**VALID, "branches": []}), lines=[3, 12], filename="routes.yaml")
    assert raised.value.detail == "routes.yaml:12: branches is empty (omit it to watch the default branch)"


def test_problems_without_a_line_name_the_route() -> None:
    """With a file name but no line, a problem reads file: route N: problem."""
    with pytest.raises(RoutesError) as raised:
        parse_routes(document(VALID, {**VALID, "branches": []}), lines=[3], filename="routes.yaml")
    assert (
        raised.value.detail == "routes.yaml: route 2: branches is empty (omit it to watch the default branch)"
    )


def test_document_problems_carry_the_file_name() -> None:
    """A problem with the document itself reads file: problem."""
    with pytest.raises(RoutesError) as raised:
        parse_routes({"routes": "acme/api"}, filename="r.json")
    assert raised.value.detail == "r.json: routes must be a list of routes, not a string"


def test_duplicate_routes_name_both_lines() -> None:
    """A route repeated in another case or branch order is refused, naming the first one."""
    with pytest.raises(RoutesError, match=r"line 9: repeats the route at line 4"):
        parse_routes(
            document(
                {**VALID, "branches": ["a", "b"]},
                {**VALID, "repository": "ACME/API", "branches": ["b", "a"]},
            ),
            lines=[4, 9],
        )


def test_described_sources_in_one_database_must_not_share_collections() -> None:
    """Two described-source routes for the same pushes, database and template are refused."""
    first = {"repository": "acme/api", "branches": ["main", "dev"], "source": {"database_name": "code"}}
    second = {
        "repository": "Acme/api",
        "branches": ["dev", "main"],
        "source": {"database_name": "code", "include_globs": ["*.md"]},
    }
    with pytest.raises(RoutesError, match=r"line 8: writes the same collections .* at line 2; add \{route\}"):
        parse_routes(document(first, second), lines=[2, 8])


@pytest.mark.parametrize(
    "second",
    [
        {"source": {"database_name": "docs", "include_globs": ["*.md"]}},
        {
            "source": {"database_name": "code", "include_globs": ["*.md"]},
            "collection": "{repo}-{sha12}-{route}",
        },
        {"source": {"database_name": "code", "include_globs": ["*.md"]}, "collection": "{repo}-{sha12}"},
        {"source": {"database_name": "code", "include_globs": ["*.md"]}, "branches": ["main"]},
        {"source_id": UUID},
    ],
)
def test_routes_that_cannot_share_a_collection_are_accepted(second: dict[str, Any]) -> None:
    """Another database, a {route} template, another template or other branches keep names apart."""
    first = {"repository": "acme/api", "source": {"database_name": "code"}}
    assert len(parse_routes(document(first, {"repository": "acme/api", **second}))) == 2


def test_parsed_routes_are_named_as_built_routes() -> None:
    """parse_routes names a route exactly as Route.build does."""
    assert parse_routes(document(VALID)).routes[0].name == route().name


def test_source_spec_json_is_what_the_routes_file_said() -> None:
    """A described source read from a document round-trips through its JSON."""
    table = parse_routes(
        document({"repository": "acme/*", "source": {"database_name": "code", "app_id": "a"}})
    )
    spec = table.routes[0].source
    assert spec is not None
    assert json.loads(spec.to_json()) == {
        "app_id": "a",
        "database_name": "code",
        "embedding_model": DEFAULT_EMBEDDING_MODEL,
    }
