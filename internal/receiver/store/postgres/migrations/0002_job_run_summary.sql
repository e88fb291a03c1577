-- The JobRun summary is an index-only scan of this index (it never reads the rows with their
-- bodies), in the order it groups by, so it counts a JobRun's entries in one pass without sorting.
CREATE INDEX deliveries_job_run_summary ON deliveries (job_run_id, api_name, result_status, received_at);

-- Quarantined bodies whose JobRun could be read carry it, so the summary counts them.
ALTER TABLE quarantine ADD COLUMN job_run_id text NOT NULL DEFAULT '';

-- Conflicting duplicates quarantined before this migration get the JobRun of the delivery they
-- conflict with, whose run id their reason names (store.ConflictReason: a prefix of 38 bytes, the
-- quoted run id, a suffix of 41). A run id that needed escaping there finds no delivery and stays
-- unattributed, as do all older invalid bodies.
UPDATE quarantine SET job_run_id = coalesce((SELECT d.job_run_id FROM deliveries d
	WHERE d.run_id = substr(quarantine.reason, 39, length(quarantine.reason) - 38 - 41)), '')
	WHERE substr(reason, 1, 22) = 'conflicting_duplicate:';

CREATE INDEX quarantine_job_run ON quarantine (job_run_id);
