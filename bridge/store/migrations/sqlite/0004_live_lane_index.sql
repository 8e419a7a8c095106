-- The index of a lane's jobs by state now holds only the live ones (queued, creating, active): the
-- worker's lane read and the arrival rule (supersede_on_arrival) read only those, so a job that ends
-- (superseded, done, ...) leaves the index instead of moving to a part nobody reads. In a busy lane that
-- was one more index page written per delivery (bench/HISTORY.md, fifth round). Every query that uses
-- it repeats the index's condition word for word, so that both planners see that it applies.
DROP INDEX jobs_lane_state;
CREATE INDEX jobs_lane_live ON jobs (lane, state) WHERE state IN ('queued', 'creating', 'active');
