-- The bridge's first schema (PostgreSQL). Times are POSIX seconds (double precision), as in SQLite.
-- Runs as one script inside the migration transaction.

CREATE TABLE deliveries (
    hook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    repository TEXT NOT NULL,
    ref TEXT NOT NULL,
    after TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (hook_id, delivery_id)
);

CREATE INDEX deliveries_received_at ON deliveries (received_at);

CREATE TABLE lanes (
    lane TEXT PRIMARY KEY,
    next_due DOUBLE PRECISION,
    owner TEXT,
    lease_until DOUBLE PRECISION,
    CHECK ((owner IS NULL) = (lease_until IS NULL))
);

CREATE INDEX lanes_next_due ON lanes (next_due);

-- Identity ids are handed out at insert time: arrival order (not quite commit order across replicas).
CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    lane TEXT NOT NULL REFERENCES lanes (lane),
    route TEXT NOT NULL,
    source_key TEXT NOT NULL,
    source_id TEXT,
    source_spec TEXT,
    repository TEXT NOT NULL,
    repository_id BIGINT NOT NULL,
    branch TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    pushed_at BIGINT,
    collection TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'creating', 'active', 'done', 'superseded', 'failed', 'dead')),
    attempts INTEGER NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    first_attempt_at DOUBLE PRECISION,
    invocation_id TEXT,
    invocation_status TEXT CHECK (invocation_status IN
        ('pending', 'processing', 'complete', 'failed', 'cancelled', 'already_indexed')),
    poll_at DOUBLE PRECISION,
    cancel_wanted BOOLEAN NOT NULL,
    error TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX jobs_lane_state ON jobs (lane, state);

CREATE INDEX jobs_state_poll_at ON jobs (state, poll_at);

CREATE INDEX jobs_state_updated_at ON jobs (state, updated_at);

CREATE INDEX jobs_invocation_id ON jobs (invocation_id);

CREATE TABLE sources (
    key TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
