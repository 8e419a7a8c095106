-- Indexes that only the tracker and the pruner read now hold only the rows those read, so storing a new
-- job and superseding one touch two and three index entries fewer (a hot lane writes and supersedes a
-- job per delivery; bench/HISTORY.md, third round). jobs_invocation_id backs no query; it is kept for
-- look-ups by hand, over the jobs that have an invocation.
DROP INDEX jobs_state_poll_at;
CREATE INDEX jobs_active_poll_at ON jobs (poll_at, id) WHERE state = 'active';
DROP INDEX jobs_state_updated_at;
CREATE INDEX jobs_prunable_updated_at ON jobs (updated_at) WHERE state IN ('done', 'superseded');
DROP INDEX jobs_invocation_id;
CREATE INDEX jobs_invocation_id ON jobs (invocation_id) WHERE invocation_id IS NOT NULL;
