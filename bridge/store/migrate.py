"""Schema migrations: numbered ``.sql`` files per dialect, applied in order inside one transaction.

``bridge/store/migrations/<dialect>/NNNN_name.sql`` are read with :mod:`importlib.resources`, so they
ship inside the wheel. ``schema_migrations(version, applied_at)`` records what ran. The run takes a
lock first (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: the caller's ``BEGIN IMMEDIATE``), so
replicas that start together apply each migration exactly once and the others wait and see it done.

Why hand-written rather than alembic: alembic needs SQLAlchemy, a large dependency for two tiny
dialects whose schema is a handful of tables; forward-only numbered scripts plus this ~50-line runner
cover what the bridge needs (``bridge migrate`` and migrate-on-start-up) and keep SQL visible.
Migrations are forward-only and additive; a database with versions this code does not know is left
alone (an older replica keeps running during a rolling upgrade).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from bridge.store.queries import Dialect
from bridge.store.transactions import Tx

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The dialect's migrations, ordered by version."""
    folder = resources.files("bridge.store").joinpath("migrations", dialect)
    migrations = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            migrations.append(
                Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
            )
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"{dialect} migrations must be numbered 1, 2, 3, ... without gaps: {versions}")
    return migrations


def split_sqlite_script(script: str) -> list[str]:
    """Split a script into statements for ``sqlite3`` (which runs one per ``execute``)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    leftover = "\n".join(
        line for line in pending.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if leftover:
        raise ValueError(f"incomplete SQL statement at the end of a migration: {leftover[:80]!r}")
    return statements


def apply_migrations(tx: Tx, dialect: Dialect, *, run_script: Callable[[str], None]) -> list[int]:
    """Apply the pending migrations inside ``tx``; the versions applied now (empty when up to date)."""
    tx.rows("lock_migrations")
    tx.run("create_schema_migrations")
    applied = {int(row["version"]) for row in tx.rows("applied_migrations")}
    done = []
    for migration in load_migrations(dialect):
        if migration.version not in applied:
            run_script(migration.sql)
            tx.run("record_migration", version=migration.version)
            done.append(migration.version)
    return done
