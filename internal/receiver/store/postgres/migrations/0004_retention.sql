-- Retention: Prune deletes the oldest rows of each table, read through these indexes. Building
-- them reads each table once and blocks writes meanwhile, as 0002 did (Intuned retries).
CREATE INDEX deliveries_received_at ON deliveries (received_at);
CREATE INDEX quarantine_received_at ON quarantine (received_at);
