"""The routes file adapter: YAML or JSON in, a RouteTable or a RoutesError naming file and line out."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
import yaml

from bridge import routes_file
from bridge.core.errors import RoutesError
from bridge.core.routing import SourceSpec
from bridge.routes_file import load_routes, parse_routes_text

ROUTES = Path(__file__).parent / "data" / "routes"
UUID = "5d6c1f0e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"
ROUTE = f"routes:\n  - repository: acme/api\n    source_id: {UUID}\n"


def problem(text: str, filename: str = "routes.yaml") -> str:
    with pytest.raises(RoutesError) as raised:
        parse_routes_text(text, filename=filename)
    return raised.value.detail or ""


def test_valid_yaml_file_loads_every_route_with_its_line() -> None:
    """The sample file gives three routes, each carrying the line it starts on."""
    table = load_routes(ROUTES / "valid.yaml")
    assert [(r.line, r.repository) for r in table.routes] == [(3, "acme/api"), (8, "acme/*"), (13, "*/docs")]
    assert table.routes[0].branches == ("main", "release/*")
    assert table.routes[1].source == SourceSpec(database_name="code", include_globs=("**/*.py", "**/*.md"))
    assert table.routes[2].source == SourceSpec(
        database_name="docs", app_id="docs-app", embedding_model="Qwen/Qwen3-Embedding-4B"
    )


def test_json_file_gives_the_same_routes_as_yaml() -> None:
    """JSON (indented with tabs, which PyYAML alone refuses) reads as the same routes, lines included."""
    from_json = load_routes(ROUTES / "valid.json").routes
    from_yaml = load_routes(ROUTES / "valid.yaml").routes
    assert [r.name for r in from_json] == [r.name for r in from_yaml[:2]]
    assert [r.line for r in from_json] == [3, 9]


def test_load_routes_accepts_a_str_path() -> None:
    """The demo file loads from a plain string path."""
    assert [r.repository for r in load_routes(str(ROUTES / "demo.yaml")).routes] == ["acme/api"]


def test_empty_route_list_loads() -> None:
    """routes: [] gives an empty table."""
    assert len(load_routes(ROUTES / "empty-list.yaml")) == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "invalid-syntax.yaml",
            ":4: expected ',' or ']', but got ':' (while parsing a flow sequence from line 3)",
        ),
        ("invalid-syntax.json", ":3: Expecting property name enclosed in double quotes (column 84)"),
        (
            "invalid-unknown-key.yaml",
            ":5: unknown key 'branch' (expected repository, branches, source_id, source, ",
        ),
        ("invalid-both-sources.yaml", ":2: give exactly one of source_id and source"),
        ("invalid-glob.yaml", ":2: branch pattern 'release/[0-9': '[' is not closed by ']'"),
        ("invalid-template.yaml", ":2: collection template '{repo}-{branch}' must contain {sha}"),
        ("invalid-source-id.yaml", ":2: source_id 'my-source' is not a UUID"),
        ("invalid-duplicate-route.yaml", ":6: repeats the route at line 2"),
        ("invalid-duplicate-key.yaml", ":4: duplicate key 'routes'"),
        ("invalid-number-branch.yaml", ":2: branches[1] must be a string, not a number (1.0; quote it)"),
    ],
)
def test_invalid_files_name_file_line_and_problem(name: str, expected: str) -> None:
    """Each invalid sample file raises RoutesError reading <file>:<line>: <problem>."""
    path = ROUTES / name
    with pytest.raises(RoutesError) as raised:
        load_routes(path)
    assert (raised.value.detail or "").startswith(f"{path}{expected}")


def test_missing_file_names_the_path_and_the_setting(tmp_path: Path) -> None:
    """A missing routes file names its path and BRIDGE_ROUTES_FILE."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(RoutesError, match=re.escape(f"{path} does not exist (set BRIDGE_ROUTES_FILE")):
        load_routes(path)


def test_unreadable_path_is_a_routes_error(tmp_path: Path) -> None:
    """A directory in place of the file is reported, not raised as OSError."""
    with pytest.raises(RoutesError, match=re.escape(f"{tmp_path}: cannot be read")):
        load_routes(tmp_path)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    """A file that is not UTF-8 names the first bad byte."""
    path = tmp_path / "routes.yaml"
    path.write_bytes(b"routes: []\n# caf\xe9\n")
    with pytest.raises(RoutesError, match=re.escape(f"{path}: not UTF-8 text (byte 16)")):
        load_routes(path)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 byte order mark (as some editors write) is skipped."""
    path = tmp_path / "routes.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + ROUTE.encode())
    assert len(load_routes(path)) == 1


def test_empty_text_is_not_a_routes_document() -> None:
    """An empty file has no routes list."""
    assert problem("") == "routes.yaml: the document must be a mapping with a 'routes' list"


def test_several_yaml_documents_are_refused() -> None:
    """A stream of several documents is refused at the second one."""
    assert problem(ROUTE + "---\nroutes: []\n").startswith("routes.yaml:4: but found another document")


def test_duplicate_key_inside_a_route_is_refused() -> None:
    """A key given twice in one route is refused at its second occurrence."""
    text = ROUTE + "    source_id: 00000000-0000-4000-8000-000000000000\n"
    assert problem(text) == "routes.yaml:4: duplicate key 'source_id'"


def test_anchors_aliases_and_merge_keys_work() -> None:
    """YAML merge keys may share settings between routes; an alias is not a duplicate key."""
    text = f"""\
defaults: &defaults
  source_id: {UUID}
"""
    assert "unknown key 'defaults'" in problem(text + "routes: []\n")
    text = f"""\
routes:
  - &api
    repository: acme/api
    source_id: {UUID}
    branches: &branches [main]
  - <<: *api
    repository: acme/web
    branches: *branches
"""
    table = parse_routes_text(text)
    assert [(r.line, r.repository, r.branches) for r in table.routes] == [
        (2, "acme/api", ("main",)),
        (6, "acme/web", ("main",)),
    ]


def test_characters_yaml_refuses_are_reported() -> None:
    """A control character YAML does not allow is a RoutesError naming the file."""
    assert (
        problem("routes: []\n\x07\n")
        == "routes.yaml:2: special characters are not allowed (character #x0007)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b\n  c: d\n", "routes.yaml:2: mapping values are not allowed here"),
        (
            "routes: `x`\n",
            "routes.yaml:1: found character '`' that cannot start any token "
            "(while scanning for the next token)",
        ),
        (
            "routes: [\n  ]]\n",
            "routes.yaml:2: expected <block end>, but found ']' (while parsing a block mapping from line 1)",
        ),
        (
            "routes: !!python/object:os.system x\n",
            "routes.yaml:1: could not determine a constructor for the tag",
        ),
    ],
)
def test_yaml_errors_name_the_line(text: str, expected: str) -> None:
    """YAML's problem, its line and what it was parsing make the message; unsafe tags are refused."""
    assert problem(text).startswith(expected)


def test_tab_indented_json_in_a_yaml_named_file_reads_as_json() -> None:
    """JSON that PyYAML refuses (tabs) is read as JSON even from a .yaml name, keeping lines."""
    item = f'{{"repository": "acme/api", "source_id": "{UUID}", "branches": []}}'
    text = f'{{\n\t"routes": [\n\t\t{item}\n\t]\n}}\n'
    assert problem(text) == "routes.yaml:3: branches is empty (omit it to watch the default branch)"


def test_broken_json_in_a_yaml_named_file_reports_the_yaml_error() -> None:
    """Text that neither YAML nor JSON reads gets YAML's message."""
    assert problem('{\n\t"routes": [,]\n}\n').startswith("routes.yaml:2: found character '\\t'")


def test_json_duplicate_keys_are_refused() -> None:
    """JSON's last-key-wins is refused like YAML's."""
    assert problem('{"routes": [], "routes": []}', filename="r.json") == "r.json: duplicate key 'routes'"


def test_json_that_yaml_cannot_read_loses_only_the_lines() -> None:
    """JSON with a key over 1024 characters (beyond YAML 1.1) still validates, by route number."""
    text = f'{{"routes": [{{"repository": "acme/api", "source_id": "{UUID}", "{"k" * 1100}": 1}}]}}'
    assert problem(text, filename="r.json").startswith("r.json: route 1: unknown key 'kkkk")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- repository: acme/api\n", "routes.yaml: the document must be a mapping with a 'routes' list"),
        ("routes:\n  repository: acme/api\n", "routes.yaml: routes must be a list of routes, not a mapping"),
    ],
)
def test_documents_of_the_wrong_shape_are_refused(text: str, expected: str) -> None:
    """A top-level list, or routes given as a mapping, is refused naming the file."""
    assert problem(text) == expected


RICH = f"""# anchors, merge keys, flow and block styles, quoting, a multi-line list
routes:
  - &described
    repository: acme/api
    branches: [main, "release/*"]
    source:
      database_name: code
      include_globs:
        - "**/*.py"
        - '**/*.md'
  - repository: "acme/*"
    source_id: {UUID}
  - {{repository: "*/docs", branches: ["**"], source_id: "{UUID}"}}
  - <<: *described
    repository: other/svc
    collection: "{{owner}}-{{repo}}-{{branch}}-{{sha12}}"
"""


def _spy(base: type, made: list[str]) -> type:
    class Spy(base):  # type: ignore[misc, valid-type]
        def __init__(self, stream: str) -> None:
            made.append(base.__name__)
            super().__init__(stream)

    return Spy


needs_libyaml = pytest.mark.skipif(
    getattr(routes_file, "_FAST_LOADER", None) is None, reason="PyYAML built without libyaml"
)


@needs_libyaml
def test_libyaml_reads_a_good_file_alone_and_as_the_pure_python_parser_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A valid file is read once, by libyaml; the routes and their lines are those the pure-Python
    parser gives."""
    made: list[str] = []
    fast = routes_file._FAST_LOADER
    monkeypatch.setattr(routes_file, "_FAST_LOADER", _spy(fast, made))
    monkeypatch.setattr(yaml, "SafeLoader", _spy(yaml.SafeLoader, made))
    with_libyaml = parse_routes_text(RICH).routes
    assert made == ["CSafeLoader"]
    monkeypatch.setattr(routes_file, "_FAST_LOADER", None)
    pure = parse_routes_text(RICH).routes
    assert made == ["CSafeLoader", "SafeLoader"]
    assert with_libyaml == pure
    assert [route.line for route in pure] == [3, 11, 13, 14]


@needs_libyaml
@pytest.mark.parametrize(
    "text",
    [
        "routes:\n  - repository: acme/api\n    branches: [main\n    source_id: x\n",  # flow sequence
        "routes:\n  - repository: acme/api\n\tsource_id: x\n",  # a tab
        "routes:\n  - repository: \x07acme/api\n",  # a control character
        f"routes:\n  - repository: acme/api\n    source_id: {UUID}\n    source_id: {UUID}\n",  # twice
    ],
)
def test_a_file_libyaml_refuses_gets_the_pure_python_parsers_message(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """libyaml words its errors otherwise: a file it refuses is read again by the pure-Python parser,
    whose message (file and line) is the one given, the same as without libyaml."""
    made: list[str] = []
    monkeypatch.setattr(routes_file, "_FAST_LOADER", _spy(routes_file._FAST_LOADER, made))
    with_libyaml = problem(text)
    assert made == ["CSafeLoader"]
    monkeypatch.setattr(routes_file, "_FAST_LOADER", None)
    assert with_libyaml == problem(text)
    assert with_libyaml.startswith("routes.yaml:")


def test_the_document_is_a_copy_made_after_the_parser_is_gone() -> None:
    """``_compacted`` returns equal values of the same types (dates and integer keys included), in new
    objects: what the route table keeps is not scattered among the parser's freed ones."""
    document = {"routes": [{"repository": "acme/api", "on": datetime.date(2026, 12, 3), 7: [b"x", 1.5]}]}
    lines = [2]
    copied, copied_lines = routes_file._compacted((document, lines))
    assert copied == document
    assert copied_lines == lines
    assert copied is not document
    assert copied["routes"][0] is not document["routes"][0]
    assert type(copied["routes"][0]["on"]) is datetime.date
    assert 7 in copied["routes"][0]
