"""Named SQL statements and migration files: loading, dialect conversion, packaging."""

from __future__ import annotations

import pytest

from bridge.core.jobs import JobState
from bridge.store.migrate import load_migrations, split_sqlite_script
from bridge.store.queries import DIALECTS, Dialect, load_queries, parse_blocks, to_pyformat


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM jobs WHERE id = :job_id", "SELECT * FROM jobs WHERE id = %(job_id)s"),
        ("VALUES (:a, :b_2)", "VALUES (%(a)s, %(b_2)s)"),
        ("WHERE name LIKE 'x%'", "WHERE name LIKE 'x%%'"),
        ("SELECT 5 % 2", "SELECT 5 %% 2"),
        ("SELECT ':not_a_param'", "SELECT ':not_a_param'"),
        ("SELECT 1 -- :comment", "SELECT 1 -- :comment"),
        ('SELECT "odd:name" FROM t', 'SELECT "odd:name" FROM t'),
        ("SELECT '12:30'", "SELECT '12:30'"),
    ],
)
def test_to_pyformat_converts_parameters_only(sql: str, expected: str) -> None:
    """:name becomes %(name)s outside quotes and comments; every literal % is doubled."""
    assert to_pyformat(sql) == expected


def test_to_pyformat_refuses_double_colon_casts() -> None:
    """'::' casts are not portable and would be mistaken for parameters."""
    with pytest.raises(ValueError, match="CAST"):
        to_pyformat("SELECT :x::text")


def test_both_dialects_have_the_same_statements() -> None:
    """Every statement name exists for SQLite and for PostgreSQL."""
    sqlite, postgres = (set(load_queries(dialect)) for dialect in DIALECTS)
    assert sqlite == postgres


def test_postgres_statements_use_pyformat() -> None:
    """The PostgreSQL statements carry %(name)s parameters, never :name."""
    statement = load_queries("postgres")["get_job"]
    assert "%(job_id)s" in statement
    assert ":job_id" not in statement


def test_claims_skip_locked_lanes_on_postgres() -> None:
    """Replicas claim with FOR UPDATE SKIP LOCKED; SQLite (one writer) needs no lock clause."""
    assert "FOR UPDATE SKIP LOCKED" in load_queries("postgres")["claim_lane"]
    assert "FOR UPDATE" not in load_queries("sqlite")["claim_lane"]


def test_list_jobs_has_one_state_slot_per_job_state() -> None:
    """Adding a JobState needs a slot in list_jobs, or the new state could never be filtered on."""
    statement = load_queries("sqlite")["list_jobs"]
    slots = [index for index in range(20) if f":state{index}," in statement or f":state{index})" in statement]
    assert slots == list(range(len(JobState)))


def test_unknown_statement_name_is_a_clear_error() -> None:
    """A typo in a statement name says which name and dialect."""
    with pytest.raises(KeyError, match="no SQL statement named 'nope' for sqlite"):
        load_queries("sqlite")["nope"]


def test_duplicate_block_is_refused() -> None:
    """Two blocks with one name are a mistake in queries.sql."""
    with pytest.raises(ValueError, match="defined twice"):
        parse_blocks("-- a --\nSELECT 1\n-- a --\nSELECT 2\n")


def test_block_comments_after_the_header_are_dropped() -> None:
    """A block's leading comment lines describe it and are not part of the statement."""
    assert parse_blocks("-- a --\n-- what a does\nSELECT 1\n") == {("a", None): "SELECT 1"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migrations_ship_as_package_data(dialect: Dialect) -> None:
    """The numbered .sql files are found through importlib.resources, starting at 1."""
    migrations = load_migrations(dialect)
    assert [migration.version for migration in migrations][:1] == [1]
    assert "CREATE TABLE jobs" in migrations[0].sql


def test_sqlite_scripts_split_into_statements() -> None:
    """Statements split at their end, comments and blank lines kept with the next one."""
    script = "-- one\nCREATE TABLE a (x INTEGER);\n\nCREATE INDEX a_x\n    ON a (x);\n-- trailing\n"
    assert split_sqlite_script(script) == [
        "-- one\nCREATE TABLE a (x INTEGER);",
        "CREATE INDEX a_x\n    ON a (x);",
    ]


def test_sqlite_script_with_an_unfinished_statement_is_refused() -> None:
    """A statement missing its ';' is an error, not silently dropped."""
    with pytest.raises(ValueError, match="incomplete"):
        split_sqlite_script("CREATE TABLE a (x INTEGER)\n")


@pytest.mark.anyio
async def test_sqlite_lane_reads_never_scan_a_lanes_history(tmp_path: object) -> None:
    """The worker reads a lane's live jobs through (lane, state) (a partial index of the live jobs since
    migration 0004), whatever the planner would guess without
    statistics (through (lane, id) it walked every superseded job of a busy lane on every read), its
    history along the lane's chain (migration 0005: primary-key steps, no index of the lane's jobs),
    and the tracker's and the pruner's reads use their partial indexes."""
    import sqlite3
    from pathlib import Path

    from bridge.store.sqlite import SqliteStore

    path = Path(str(tmp_path)) / "plan.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    connection = sqlite3.connect(path)
    queries = load_queries("sqlite")

    def plan(name: str, **params: object) -> list[str]:
        return [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {queries[name]}", params)]

    try:
        history = plan("lane_history", lane="L", history=50)
        lanes = plan("prune_lanes")
        live = plan("lane_live", lane="L")
        release = plan("release_lane", lane="L", owner="w", hold_until=None)
        arrival = plan("supersede_on_arrival", first=1, last=2, delivery_id=None)
        polls = plan("due_polls", now=0.0, limit=10)
        prune = plan("prune_jobs", before=0.0)
    finally:
        connection.close()
    # The live jobs of a lane through the partial (lane, state) index (migration 0004), by every reader.
    assert "SEARCH jobs USING INDEX jobs_lane_live (lane=? AND state=?)" in live
    assert "SEARCH jobs USING INDEX jobs_lane_live (lane=? AND state=?)" in release
    assert "SEARCH queued USING INDEX jobs_lane_live (lane=? AND state=? AND rowid<?)" in arrival
    assert not [step for step in arrival if step.startswith("SCAN")]
    # The history: the lane's row, then one step per job along prev_id (migration 0005).
    assert "SEARCH lanes USING INDEX sqlite_autoindex_lanes_1 (lane=?)" in history
    assert "SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)" in history
    assert not [step for step in history if step.startswith("SCAN jobs")]
    assert not [step for step in history if "jobs USING" in step and "PRIMARY KEY" not in step]
    # The pruner finds empty lanes by their job_count (migration 0005), without reading jobs.
    assert lanes == ["SCAN lanes"]
    # The tracker and the pruner read partial indexes (migration 0003), which queued jobs stay out of.
    assert polls == ["SEARCH jobs USING INDEX jobs_active_poll_at (poll_at<?)"]
    assert prune == ["SEARCH jobs USING INDEX jobs_prunable_updated_at (updated_at<?)"]
