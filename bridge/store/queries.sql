-- Every SQL statement of the SQLite and PostgreSQL stores, by name (see bridge/store/queries.py).
--
-- A block starts with a header line "-- name --"; a header "-- name@sqlite --" or "-- name@postgres --"
-- gives one dialect its own version of a statement. Comment lines right after a header describe it.
-- Parameters are written :name (sqlite3's named style); psycopg gets them as %(name)s.
-- Write SQL both engines accept: no "::" casts (CAST(x AS type) is portable), no LEAST/GREATEST
-- (they ignore NULLs in PostgreSQL but not in SQLite), booleans tested as bare columns.
-- A job is *due* when it is waiting (queued, creating) or wants its invocation cancelled.

-- ping --
SELECT 1 AS ok

-- insert_delivery --
-- Store a delivery; changes no row when (hook_id, delivery_id) is already stored.
INSERT INTO deliveries (hook_id, delivery_id, event, repository, ref, after, received_at)
VALUES (:hook_id, :delivery_id, :event, :repository, :ref, :after, :received_at)
ON CONFLICT (hook_id, delivery_id) DO NOTHING

-- insert_job --
INSERT INTO jobs (
    delivery_id, lane, route, source_key, source_id, source_spec, repository, repository_id, branch,
    before, after, pushed_at, collection, state, attempts, received_at, due_at, cancel_wanted, updated_at
) VALUES (
    :delivery_id, :lane, :route, :source_key, :source_id, :source_spec, :repository, :repository_id, :branch,
    :before, :after, :pushed_at, :collection, 'queued', 0, :received_at, :due_at, FALSE, :received_at
)
RETURNING id

-- supersede_on_arrival --
-- The jobs stored with ids :first to :last (of :delivery_id, unless NULL) replace the queued jobs they
-- directly follow (core.supersede.superseded_on_arrival, the same rule), in lanes no worker holds: a
-- worker's plan of a lane it holds must not change under it. A replaced job's updated_at is the arrival
-- of the first new job that replaces it, as if they had been stored one by one. Returns what it
-- replaced, so the caller can say which new push replaced which job.
UPDATE jobs SET state = 'superseded', error = 'superseded by a newer push', updated_at = (
    SELECT new.received_at FROM jobs AS new
    WHERE new.id BETWEEN :first AND :last
        AND (CAST(:delivery_id AS TEXT) IS NULL OR new.delivery_id = :delivery_id)
        AND new.lane = jobs.lane AND new.before = jobs.after AND new.id > jobs.id
        AND COALESCE(jobs.pushed_at, 0) <= COALESCE(new.pushed_at, 0)
    ORDER BY new.id
    LIMIT 1
)
WHERE id IN (
    SELECT queued.id FROM jobs AS new
    JOIN jobs AS queued ON queued.lane = new.lane AND queued.state = 'queued'
        AND queued.state IN ('queued', 'creating', 'active')
        AND queued.after = new.before AND queued.id < new.id
        AND COALESCE(queued.pushed_at, 0) <= COALESCE(new.pushed_at, 0)
    WHERE new.id BETWEEN :first AND :last
        AND (CAST(:delivery_id AS TEXT) IS NULL OR new.delivery_id = :delivery_id)
        AND NOT EXISTS (SELECT 1 FROM lanes WHERE lanes.lane = new.lane AND lanes.owner IS NOT NULL)
)
RETURNING id, lane, before, after, pushed_at

-- lower_lane --
-- Create the lane or bring its next due time forward to :due_at (a NULL next_due means "never"). A lane
-- already due as early is left alone: not rewritten (with its next_due index entry) to the same value.
INSERT INTO lanes (lane, next_due) VALUES (:lane, :due_at)
ON CONFLICT (lane) DO UPDATE SET next_due = excluded.next_due
WHERE lanes.next_due IS NULL OR lanes.next_due > excluded.next_due

-- claim_lane@sqlite --
-- The single writer thread serialises claims, so no row lock is needed.
UPDATE lanes SET owner = :owner, lease_until = :lease_until
WHERE lane = (
    SELECT lane FROM lanes
    WHERE next_due <= :now AND (owner IS NULL OR lease_until < :now)
        AND (hold_until IS NULL OR hold_until <= :now)
    ORDER BY next_due, lane
    LIMIT 1
)
RETURNING lane

-- claim_lane@postgres --
-- Replicas claim concurrently: a lane another transaction has locked is skipped, not waited for.
UPDATE lanes SET owner = :owner, lease_until = :lease_until
WHERE lane = (
    SELECT lane FROM lanes
    WHERE next_due <= :now AND (owner IS NULL OR lease_until < :now)
        AND (hold_until IS NULL OR hold_until <= :now)
    ORDER BY next_due, lane
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING lane

-- renew_lane --
UPDATE lanes SET lease_until = :lease_until
WHERE lane = :lane AND owner = :owner AND lease_until >= :now

-- release_lane --
-- :hold_until (or NULL) keeps claims off the lane until then: the minimum gap between two creates.
UPDATE lanes SET owner = NULL, lease_until = NULL, hold_until = :hold_until, next_due = (
    SELECT MIN(due.due_at) FROM (
        SELECT jobs.due_at FROM jobs WHERE jobs.lane = lanes.lane AND jobs.state IN ('queued', 'creating')
            AND jobs.state IN ('queued', 'creating', 'active')
        UNION ALL
        SELECT jobs.due_at FROM jobs WHERE jobs.lane = lanes.lane AND jobs.cancel_wanted
    ) AS due
)
WHERE lane = :lane AND owner = :owner

-- release_all_leases --
-- At start-up of the only replica (SQLite): whoever held a lease is dead.
UPDATE lanes SET owner = NULL, lease_until = NULL, next_due = (
    SELECT MIN(due.due_at) FROM (
        SELECT jobs.due_at FROM jobs WHERE jobs.lane = lanes.lane AND jobs.state IN ('queued', 'creating')
            AND jobs.state IN ('queued', 'creating', 'active')
        UNION ALL
        SELECT jobs.due_at FROM jobs WHERE jobs.lane = lanes.lane AND jobs.cancel_wanted
    ) AS due
)
WHERE owner IS NOT NULL

-- lock_lane@sqlite --
SELECT owner, lease_until FROM lanes WHERE lane = :lane

-- lock_lane@postgres --
-- Taken in lane order by every transaction that touches several lanes, so they cannot deadlock.
SELECT owner, lease_until FROM lanes WHERE lane = :lane FOR UPDATE

-- job_lane --
SELECT lane FROM jobs WHERE id = :job_id

-- lane_live --
-- The worker's read of a lane, part one: its live jobs (queued, creating, active) and those with
-- cancel_wanted, whole. Disjoint parts, so UNION ALL.
SELECT * FROM jobs WHERE lane = :lane AND state IN ('queued', 'creating', 'active')
UNION ALL
SELECT * FROM jobs WHERE lane = :lane AND cancel_wanted AND state NOT IN ('queued', 'creating', 'active')
ORDER BY id

-- lane_live@sqlite --
-- As above, the index named: SQLite's planner, merging the parts in id order, once read the live states
-- through an index of the lane's whole history (thousands of superseded jobs in a busy lane; profiled).
SELECT * FROM jobs INDEXED BY jobs_lane_live WHERE lane = :lane AND state IN ('queued', 'creating', 'active')
UNION ALL
SELECT * FROM jobs WHERE lane = :lane AND cancel_wanted AND state NOT IN ('queued', 'creating', 'active')
ORDER BY id

-- lane_history --
-- Part two: the :history newest other jobs, only the columns that order pushes (core.supersede.Link).
SELECT id, before, after, pushed_at FROM (
    SELECT id, before, after, pushed_at FROM jobs
    WHERE lane = :lane AND state NOT IN ('queued', 'creating', 'active') AND NOT cancel_wanted
    ORDER BY id DESC
    LIMIT :history
) AS history
ORDER BY id

-- lane_history@sqlite --
-- As above, without an index of the lane's jobs: SQLite migration 0005 chains each lane's jobs (prev_id,
-- lanes.last_job), and this walks the chain back from the newest job, one primary-key step per job,
-- until it has passed :history jobs that are neither live nor cancel_wanted ("ended"; "newer" counts
-- those after a row). A job the pruner deleted ends the walk: what lies behind it is older still.
WITH RECURSIVE chain (id, before, after, pushed_at, ended, newer, prev_id) AS (
    SELECT jobs.id, jobs.before, jobs.after, jobs.pushed_at,
        jobs.state NOT IN ('queued', 'creating', 'active') AND NOT jobs.cancel_wanted, 0, jobs.prev_id
    FROM lanes JOIN jobs ON jobs.id = lanes.last_job
    WHERE lanes.lane = :lane
    UNION ALL
    SELECT jobs.id, jobs.before, jobs.after, jobs.pushed_at,
        jobs.state NOT IN ('queued', 'creating', 'active') AND NOT jobs.cancel_wanted,
        chain.newer + chain.ended, jobs.prev_id
    FROM chain JOIN jobs ON jobs.id = chain.prev_id
    WHERE chain.newer + chain.ended < :history
)
SELECT id, before, after, pushed_at FROM chain WHERE ended AND newer < :history ORDER BY id

-- update_job --
-- One static statement for every JobUpdate: :set_<field> says whether <field> changes.
UPDATE jobs SET
    state = CASE WHEN :set_state THEN :state ELSE state END,
    attempts = CASE WHEN :set_attempts THEN :attempts ELSE attempts END,
    due_at = CASE WHEN :set_due_at THEN :due_at ELSE due_at END,
    first_attempt_at = CASE WHEN :set_first_attempt_at THEN :first_attempt_at ELSE first_attempt_at END,
    invocation_id = CASE WHEN :set_invocation_id THEN :invocation_id ELSE invocation_id END,
    invocation_status = CASE WHEN :set_invocation_status THEN :invocation_status ELSE invocation_status END,
    poll_at = CASE WHEN :set_poll_at THEN :poll_at ELSE poll_at END,
    cancel_wanted = CASE WHEN :set_cancel_wanted THEN :cancel_wanted ELSE cancel_wanted END,
    error = CASE WHEN :set_error THEN :error ELSE error END,
    source_id = CASE WHEN :set_source_id THEN :source_id ELSE source_id END,
    updated_at = :now
WHERE id = :job_id
RETURNING lane, state, due_at, cancel_wanted

-- requeue_job --
UPDATE jobs SET
    state = 'queued', due_at = :now, attempts = 0, first_attempt_at = NULL, error = NULL, updated_at = :now
WHERE id = :job_id AND state IN ('failed', 'dead')
RETURNING lane

-- due_polls --
SELECT * FROM jobs
WHERE state = 'active' AND poll_at <= :now
ORDER BY poll_at, id
LIMIT :limit

-- get_job --
SELECT * FROM jobs WHERE id = :job_id

-- list_jobs --
-- One slot per JobState (a test keeps the count in step); unused slots are NULL and match nothing.
SELECT * FROM jobs
WHERE (:any_state OR state IN (:state0, :state1, :state2, :state3, :state4, :state5, :state6))
    AND (CAST(:lane AS TEXT) IS NULL OR lane = :lane)
ORDER BY id DESC
LIMIT :limit

-- count_jobs --
-- One pass over the jobs, one sum per state: no GROUP BY, whose sorter held every row's state in
-- memory (SQLite, temp_store=MEMORY: +18 MB at 400,000 jobs, kept by the allocator afterwards).
SELECT
    COALESCE(SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END), 0) AS queued,
    COALESCE(SUM(CASE WHEN state = 'creating' THEN 1 ELSE 0 END), 0) AS creating,
    COALESCE(SUM(CASE WHEN state = 'active' THEN 1 ELSE 0 END), 0) AS active,
    COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS done,
    COALESCE(SUM(CASE WHEN state = 'superseded' THEN 1 ELSE 0 END), 0) AS superseded,
    COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
    COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dead
FROM jobs

-- get_source --
SELECT source_id FROM sources WHERE key = :key

-- put_source --
INSERT INTO sources (key, source_id) VALUES (:key, :source_id)
ON CONFLICT (key) DO NOTHING

-- prune_deliveries --
DELETE FROM deliveries WHERE received_at < :before

-- prune_jobs --
DELETE FROM jobs WHERE state IN ('done', 'superseded') AND updated_at < :before

-- prune_deliveries_batch@sqlite --
-- The oldest :limit of them (the worker's pruner deletes in batches, see transactions.prune).
DELETE FROM deliveries WHERE rowid IN (
    SELECT rowid FROM deliveries WHERE received_at < :before ORDER BY received_at LIMIT :limit
)

-- prune_deliveries_batch@postgres --
-- Rows another replica's pruner is deleting are skipped, not waited for. By ctid, the rows the subquery
-- locked: matched by key instead, the planner hashed the batch and scanned the whole table for it
-- (18.7 ms for 500 of 100,000 rows, against 1.2 ms; EXPLAIN ANALYZE, twenty-second round).
DELETE FROM deliveries WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM deliveries WHERE received_at < :before
    ORDER BY received_at LIMIT :limit FOR UPDATE SKIP LOCKED
))

-- prune_jobs_batch@sqlite --
-- The WHERE repeats jobs_prunable_updated_at's, so that the partial index serves it.
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE state IN ('done', 'superseded') AND updated_at < :before
    ORDER BY updated_at LIMIT :limit
)

-- prune_jobs_batch@postgres --
-- As an array, so that each id is a primary-key lookup whatever the planner's estimates.
DELETE FROM jobs WHERE id = ANY(ARRAY(
    SELECT id FROM jobs WHERE state IN ('done', 'superseded') AND updated_at < :before
    ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED
))

-- prune_lanes@sqlite --
-- Whether a lane has jobs is its job_count (SQLite migration 0005: there is no index of every job by
-- lane). SQLite's own foreign-key check is off since then (it would scan jobs at each lane deleted), so
-- this reads no job at all.
DELETE FROM lanes WHERE owner IS NULL AND job_count = 0

-- prune_lanes@postgres --
-- A lane some transaction holds (an accept adding a job to it, a claim) is left for the next prune.
DELETE FROM lanes WHERE lane IN (
    SELECT lane FROM lanes
    WHERE owner IS NULL AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.lane = lanes.lane)
    FOR UPDATE SKIP LOCKED
)

-- lock_migrations@sqlite --
-- The migration transaction began with BEGIN IMMEDIATE, which already excludes every other writer.
SELECT 1 AS ok

-- lock_migrations@postgres --
-- Replicas starting at once queue here; the lock ends with the transaction.
SELECT pg_advisory_xact_lock(4242420001) AS ok

-- create_schema_migrations@sqlite --
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)

-- create_schema_migrations@postgres --
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- applied_migrations --
SELECT version FROM schema_migrations ORDER BY version

-- record_migration --
INSERT INTO schema_migrations (version) VALUES (:version)
