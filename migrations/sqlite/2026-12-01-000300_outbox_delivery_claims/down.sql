ALTER TABLE outbox_events DROP COLUMN claimed_until;
ALTER TABLE outbox_events DROP COLUMN claimed_by;
