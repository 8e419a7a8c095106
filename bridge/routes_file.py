"""Read the routes file (YAML, or JSON) into a ``RouteTable``; the rules live in ``bridge.core.routing``.

Every problem is a ``RoutesError`` that names the file and, where one applies, the line:
``routes.yaml:12: branches is empty``. YAML mappings that repeat a key are refused (a plain YAML load
would keep the last one silently). A file named ``*.json``, or one that YAML cannot read but JSON can
(JSON indented with tabs), is read as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from bridge.core.errors import RoutesError
from bridge.core.routing import RouteTable, parse_routes


def load_routes(path: str | os.PathLike[str]) -> RouteTable:
    """Read and validate the routes file at ``path`` (``BRIDGE_ROUTES_FILE``)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RoutesError(
            f"{os.fspath(path)} does not exist (set BRIDGE_ROUTES_FILE to the routes file's path)"
        ) from None
    except UnicodeDecodeError as exc:
        raise RoutesError(f"{os.fspath(path)}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RoutesError(f"{os.fspath(path)}: cannot be read ({exc.strerror or exc})") from None
    return parse_routes_text(text, filename=os.fspath(path))


def parse_routes_text(text: str, *, filename: str = "routes.yaml") -> RouteTable:
    """Validate the text of a routes file; ``filename`` only labels the messages."""
    if filename.lower().endswith(".json"):
        document, lines = _read_json(text, filename=filename)
    else:
        try:
            document, lines = _read_yaml(text, filename=filename)
        except RoutesError as yaml_error:
            if not text.lstrip().startswith("{"):
                raise
            try:  # JSON is YAML, except where PyYAML (YAML 1.1) disagrees, as on tab indentation
                document, lines = _read_json(text, filename=filename)
            except RoutesError:
                raise yaml_error from None
    return parse_routes(document, lines=lines, filename=filename)


def _read_yaml(text: str, *, filename: str) -> tuple[Any, list[int]]:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise RoutesError(f"{filename}:{line}: {exc.reason} (character #x{exc.character:04x})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        _refuse_duplicate_keys(node, filename=filename)
        document = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise RoutesError(_yaml_problem(exc, filename=filename)) from None
    finally:
        loader.dispose()
    return document, _route_lines(node)


def _yaml_problem(exc: yaml.MarkedYAMLError, *, filename: str) -> str:
    """``file:4: expected ',' or ']', but got ':' (while parsing a flow sequence from line 3)``."""
    where = f"{filename}:{exc.problem_mark.line + 1}" if exc.problem_mark else filename
    problem = exc.problem or "not valid YAML"
    if exc.context:
        since = f" from line {exc.context_mark.line + 1}" if exc.context_mark else ""
        problem = f"{problem} ({exc.context}{since})"
    return f"{where}: {problem}"


def _read_json(text: str, *, filename: str) -> tuple[Any, list[int]]:
    try:
        document = json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        raise RoutesError(f"{filename}: duplicate key {exc.args[0]!r}") from None
    except json.JSONDecodeError as exc:
        raise RoutesError(f"{filename}:{exc.lineno}: {exc.msg} (column {exc.colno})") from None
    # JSON has no tabs inside strings, so spaces for tabs keep every line where it was, for YAML's sake.
    try:
        return document, _route_lines(yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader))
    except yaml.YAMLError:  # JSON that YAML 1.1 cannot read even so (a key over 1024 characters)
        return document, []


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_duplicate_keys(node: yaml.Node, *, filename: str) -> None:
    stack = [node]
    seen_nodes: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen_nodes:  # aliases share nodes
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in keys:
                        raise RoutesError(
                            f"{filename}:{key.start_mark.line + 1}: duplicate key {key.value!r}"
                        )
                    keys.add((key.tag, key.value))
                stack.extend((key, value))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _route_lines(node: yaml.Node | None) -> list[int]:
    """The 1-based line of each item of the top-level ``routes`` sequence."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "routes"
            and isinstance(value, yaml.SequenceNode)
        ):
            return [item.start_mark.line + 1 for item in value.value]
    return []
