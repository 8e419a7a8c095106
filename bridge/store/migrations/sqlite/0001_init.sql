-- The bridge's first schema (SQLite). Times are POSIX seconds; booleans are 0/1.
-- One statement per ";"-terminated line group: the runner splits with sqlite3.complete_statement.

CREATE TABLE deliveries (
    hook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    repository TEXT NOT NULL,
    ref TEXT NOT NULL,
    after TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (hook_id, delivery_id)
);

CREATE INDEX deliveries_received_at ON deliveries (received_at);

CREATE TABLE lanes (
    lane TEXT PRIMARY KEY,
    next_due REAL,
    owner TEXT,
    lease_until REAL,
    CHECK ((owner IS NULL) = (lease_until IS NULL))
);

CREATE INDEX lanes_next_due ON lanes (next_due);

-- AUTOINCREMENT: an id is never reused, even after the newest jobs were pruned (ids are arrival order).
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    lane TEXT NOT NULL REFERENCES lanes (lane),
    route TEXT NOT NULL,
    source_key TEXT NOT NULL,
    source_id TEXT,
    source_spec TEXT,
    repository TEXT NOT NULL,
    repository_id INTEGER NOT NULL,
    branch TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    pushed_at INTEGER,
    collection TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'creating', 'active', 'done', 'superseded', 'failed', 'dead')),
    attempts INTEGER NOT NULL,
    received_at REAL NOT NULL,
    due_at REAL NOT NULL,
    first_attempt_at REAL,
    invocation_id TEXT,
    invocation_status TEXT CHECK (invocation_status IN
        ('pending', 'processing', 'complete', 'failed', 'cancelled', 'already_indexed')),
    poll_at REAL,
    cancel_wanted INTEGER NOT NULL CHECK (cancel_wanted IN (0, 1)),
    error TEXT,
    updated_at REAL NOT NULL
);

CREATE INDEX jobs_lane_state ON jobs (lane, state);

CREATE INDEX jobs_state_poll_at ON jobs (state, poll_at);

CREATE INDEX jobs_state_updated_at ON jobs (state, updated_at);

CREATE INDEX jobs_invocation_id ON jobs (invocation_id);

CREATE TABLE sources (
    key TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
