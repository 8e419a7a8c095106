-- A lane's history is a chain instead of an index. Every job points at the job stored before it in its
-- lane (prev_id), each lane at its newest job (last_job) and counts its jobs (job_count); triggers keep
-- all three as jobs are stored and deleted, in the same statement. The worker reads a lane's history
-- by walking the chain back from last_job (lane_history@sqlite), one primary-key step per job, instead
-- of through the (lane, id) index, and the pruner asks job_count whether a lane is empty.
-- Why: jobs_lane_id gained an entry at every accept, and in each lane at a different place: of the 27.5
-- pages a group commit of 10 accepts wrote to the WAL, 12.7 were that index's (bench/HISTORY.md,
-- seventeenth round). The chain's writes land on pages the commit writes anyway: the newest job's (the
-- jobs table is in id order) and the lane's row (the accept already upserts it).
-- PostgreSQL keeps its index: its replicas insert into one lane concurrently, and a chain would
-- serialise them on the lane's row.
ALTER TABLE jobs ADD COLUMN prev_id INTEGER;
ALTER TABLE lanes ADD COLUMN last_job INTEGER;
ALTER TABLE lanes ADD COLUMN job_count INTEGER NOT NULL DEFAULT 0;

-- The chains and counts of the jobs already stored.
UPDATE jobs SET prev_id = (
    SELECT MAX(earlier.id) FROM jobs AS earlier WHERE earlier.lane = jobs.lane AND earlier.id < jobs.id
);
UPDATE lanes SET
    last_job = (SELECT MAX(jobs.id) FROM jobs WHERE jobs.lane = lanes.lane),
    job_count = (SELECT COUNT(*) FROM jobs WHERE jobs.lane = lanes.lane);

-- jobs.lane's foreign key, by triggers. SQLite checks a foreign key on both sides: storing a job looks
-- its lane up (cheap), deleting a lane searches jobs for the lane's rows, which without an index of
-- every job by lane is a scan of the whole table (6.5 ms per lane at 35,000 jobs, and linear in them).
-- So the store turns SQLite's checks off (sqlite.py) and keeps both sides here instead: a job whose
-- lane does not exist is refused as the foreign key refused it, and the pruner deletes only lanes with
-- a job_count of 0. Every accept creates or updates the job's lane before storing the job (lower_lane,
-- or the bulk accept's upsert).
CREATE TRIGGER jobs_lane_exists BEFORE INSERT ON jobs
WHEN NOT EXISTS (SELECT 1 FROM lanes WHERE lane = NEW.lane)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed');
END;

CREATE TRIGGER jobs_chain AFTER INSERT ON jobs
BEGIN
    UPDATE jobs SET prev_id = (SELECT last_job FROM lanes WHERE lane = NEW.lane) WHERE id = NEW.id;
    UPDATE lanes SET last_job = NEW.id, job_count = job_count + 1 WHERE lane = NEW.lane;
END;

CREATE TRIGGER jobs_unchain AFTER DELETE ON jobs
BEGIN
    UPDATE lanes SET job_count = job_count - 1 WHERE lane = OLD.lane;
END;

-- The reads by lane that remain use the partial indexes of the live jobs (jobs_lane_live) and of those
-- with cancel_wanted (jobs_lane_cancel_wanted). A job is stored queued and enters only the first.
DROP INDEX jobs_lane_id;
