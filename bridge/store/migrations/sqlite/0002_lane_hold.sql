-- A lane may be held after a create (BRIDGE_LANE_MIN_GAP_SECONDS): claims skip it until hold_until.
ALTER TABLE lanes ADD COLUMN hold_until REAL;

-- lane_jobs and release_lane read a lane's live jobs and its recent history without scanning the lane.
CREATE INDEX jobs_lane_id ON jobs (lane, id);
CREATE INDEX jobs_lane_cancel_wanted ON jobs (lane) WHERE cancel_wanted;
