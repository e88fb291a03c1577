-- Deliveries keyed by run_id: the primary key is the dedup key every replica shares.
CREATE TABLE deliveries (
	run_id        text        PRIMARY KEY,
	seq           bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
	job_id        text        NOT NULL DEFAULT '',
	job_run_id    text        NOT NULL DEFAULT '',
	project       text        NOT NULL,
	api_name      text        NOT NULL,
	result_status text        NOT NULL,
	received_at   timestamptz NOT NULL,
	body          bytea       NOT NULL
);
CREATE INDEX deliveries_job_run ON deliveries (job_run_id, seq);

-- Authenticated bodies that were not sink bodies: kept, never dropped.
CREATE TABLE quarantine (
	id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	received_at timestamptz NOT NULL,
	reason      text        NOT NULL,
	body        bytea       NOT NULL
);
