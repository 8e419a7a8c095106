"""Read the routes file (YAML, or JSON) into a ``RouteTable``; the rules live in ``bridge.core.routing``.

Every problem is a ``RoutesError`` that names the file and, where one applies, the line:
``routes.yaml:12: branches is empty``. YAML mappings that repeat a key are refused (a plain YAML load
would keep the last one silently). A file named ``*.json``, or one that YAML cannot read but JSON can
(JSON indented with tabs), is read as JSON.
"""

from __future__ import annotations

import json
import os
import pickle
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


# libyaml's parser when PyYAML was built with it (its wheels are): the same YAML 1.1 and the same safe
# constructor, ~5x faster. Ten thousand routes took 5.3-6.6 s to read with the pure-Python parser.
_Loader = type[yaml.SafeLoader] | type[yaml.CSafeLoader]
_FAST_LOADER: _Loader | None = getattr(yaml, "CSafeLoader", None)


def _read_yaml(text: str, *, filename: str) -> tuple[Any, list[int]]:
    """The document and its routes' lines, read compactly (:func:`_compacted`): with libyaml when it is
    there, with the pure-Python parser when it is not or when libyaml refuses the text, so that every
    message about a broken file is the one the pure-Python parser gives (libyaml words them otherwise)."""
    if _FAST_LOADER is not None:
        try:
            return _compacted(_compose(text, _FAST_LOADER, filename=filename))
        except (yaml.YAMLError, RoutesError):
            pass  # read again below, for the pure-Python parser's message
    return _compacted(_compose(text, yaml.SafeLoader, filename=filename))


def _compacted(read: tuple[Any, list[int]]) -> tuple[Any, list[int]]:
    """``read`` copied into objects made after every parser object is gone.

    Why: the parser makes several short-lived objects (nodes, marks, events) for each value it keeps,
    allocated in between the kept ones, and CPython's allocator gives memory back to the system only
    when every object in an arena of it is free. Ten thousand routes left the process 42 MB (libyaml)
    to 59 MB (pure Python) larger after the parser's objects were freed; copied once through a pickle,
    whose one buffer is freed in turn, 18 MB (``bench/HISTORY.md``, twenty-second round). Pickle, not
    JSON, so that every YAML value keeps its type (dates, integer keys) for the route checks' messages;
    it unpickles only what this function pickled the line before."""
    blob = pickle.dumps(read, protocol=pickle.HIGHEST_PROTOCOL)
    del read
    copy: tuple[Any, list[int]] = pickle.loads(blob)  # noqa: S301 - made just above from our own data
    return copy


def _compose(text: str, loader_class: _Loader, *, filename: str) -> tuple[Any, list[int]]:
    try:
        loader = loader_class(text)
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
    spaced = text.replace("\t", " ")
    for loader in (_FAST_LOADER, yaml.SafeLoader):
        if loader is not None:
            try:
                return document, _route_lines(yaml.compose(spaced, Loader=loader))
            except yaml.YAMLError:  # JSON that YAML 1.1 cannot read even so (a key over 1024 characters)
                continue
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
