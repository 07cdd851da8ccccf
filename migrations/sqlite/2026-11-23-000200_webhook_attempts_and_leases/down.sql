ALTER TABLE orders DROP COLUMN reconcile_after;
DROP TABLE leases;
DROP TABLE webhook_attempts;
ALTER TABLE outbox_events DROP COLUMN delivery_round;
