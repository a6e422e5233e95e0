-- +goose Up
-- River indexes every job's args and metadata with GIN, for filtering jobs by their contents.
-- Nothing here queries jobs by contents, and each relayed event's job is written three times
-- (inserted, fetched, completed): every version of the row re-indexed its whole event JSON.
-- Dropping the two indexes cut the system's CPU per order (BENCHMARKS.md).
DROP INDEX IF EXISTS river_job_args_index;
DROP INDEX IF EXISTS river_job_metadata_index;

-- +goose Down
CREATE INDEX IF NOT EXISTS river_job_args_index ON river_job USING GIN (args);
CREATE INDEX IF NOT EXISTS river_job_metadata_index ON river_job USING GIN (metadata);
