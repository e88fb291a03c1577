-- Backfill: a delivery built from a line of the JobRun's results file is marked, and the summary
-- counts those from its index: the column goes at the end of the index's key, so the summary
-- stays an index-only scan in the order it groups by. Adding a column with a constant default
-- rewrites nothing; rebuilding the index reads the table once and blocks writes meanwhile, as
-- 0002 did (Intuned retries).
ALTER TABLE deliveries ADD COLUMN backfilled boolean NOT NULL DEFAULT false;
DROP INDEX deliveries_job_run_summary;
CREATE INDEX deliveries_job_run_summary ON deliveries (job_run_id, api_name, result_status, received_at, backfilled);

-- A body quarantined once per JobRun (store.Rejected.Once, the invalid lines of a backfill)
-- carries its SHA-256; other bodies have none, and NULLs never collide.
ALTER TABLE quarantine ADD COLUMN digest bytea;
CREATE UNIQUE INDEX quarantine_digest ON quarantine (job_run_id, digest) WHERE digest IS NOT NULL;
