"""Named SQL statements, loaded from ``queries.sql`` for one dialect.

The file keeps every statement in a named block (as procrastinate's ``queries.sql`` does), written once
in the ``:name`` parameter style that sqlite3 understands. For psycopg, :func:`to_pyformat` rewrites the
parameters as ``%(name)s`` and doubles every literal ``%``. A block named ``name@dialect`` replaces
``name`` for that dialect only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Literal

Dialect = Literal["sqlite", "postgres"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")

_HEADER = re.compile(r"^-- (?P<name>[a-z][a-z0-9_]*)(?:@(?P<dialect>[a-z]+))? --$")

# Quoted text and comments pass through whole; a ":name" outside them is a parameter; "::" is refused.
_TOKEN = re.compile(
    r"""
      (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<cast>::)
    | :(?P<param>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


def to_pyformat(sql: str) -> str:
    """Rewrite ``:name`` parameters as psycopg's ``%(name)s`` and escape literal ``%`` as ``%%``."""

    def replace(match: re.Match[str]) -> str:
        if match["cast"]:
            raise ValueError("'::' casts are not portable: write CAST(x AS type)")
        if match["param"]:
            return f"%({match['param']})s"
        if match["percent"]:
            return "%%"
        return match[0].replace("%", "%%")

    return _TOKEN.sub(replace, sql)


class Queries(Mapping[str, str]):
    """The statements of one dialect, by name, ready for its driver."""

    def __init__(self, dialect: Dialect, statements: Mapping[str, str]) -> None:
        self.dialect = dialect
        self._statements = dict(statements)

    def __getitem__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise KeyError(f"no SQL statement named {name!r} for {self.dialect}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)


def parse_blocks(text: str) -> dict[tuple[str, str | None], str]:
    """Split a named-block SQL file into ``{(name, dialect or None): statement}``."""
    blocks: dict[tuple[str, str | None], list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            key = (header["name"], header["dialect"])
            if header["dialect"] is not None and header["dialect"] not in DIALECTS:
                raise ValueError(f"unknown dialect in SQL block header: {line.strip()!r}")
            if key in blocks:
                raise ValueError(f"SQL block {line.strip()!r} is defined twice")
            current = blocks[key] = []
        elif current is not None and not (line.startswith("--") and not current):
            current.append(line)
    statements = {key: "\n".join(lines).strip() for key, lines in blocks.items()}
    empty = [name for (name, _), sql in statements.items() if not sql]
    if empty:
        raise ValueError(f"empty SQL blocks: {empty}")
    return statements


@cache
def load_queries(dialect: Dialect) -> Queries:
    """The statements of ``queries.sql`` for ``dialect`` (parsed once per process)."""
    text = resources.files("bridge.store").joinpath("queries.sql").read_text(encoding="utf-8")
    chosen: dict[str, str] = {}
    for (name, block_dialect), sql in parse_blocks(text).items():
        if block_dialect == dialect or (block_dialect is None and name not in chosen):
            chosen[name] = sql
    if dialect == "postgres":
        chosen = {name: to_pyformat(sql) for name, sql in chosen.items()}
    return Queries(dialect, chosen)
