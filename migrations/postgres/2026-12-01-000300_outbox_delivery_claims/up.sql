-- A claim fences each webhook delivery: the dispatcher that claimed an event (`claimed_by`, a
-- process's holder id) is the only one that sends it until `claimed_until`, a deadline longer
-- than one delivery's timeout and renewed before every send. Without it a second replica took
-- the dispatcher's lease during a slow delivery and sent the same event again.
ALTER TABLE outbox_events ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox_events ADD COLUMN claimed_until TIMESTAMP;
