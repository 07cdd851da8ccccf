-- Merchant webhook delivery: every attempt is recorded; a redelivery starts a new round, and an
-- event is delivered when every endpoint of its app acknowledged it in the current round.
ALTER TABLE outbox_events ADD COLUMN delivery_round BIGINT NOT NULL DEFAULT 0;

CREATE TABLE webhook_attempts (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    event_id        TEXT COLLATE "C" NOT NULL REFERENCES outbox_events (id),
    delivery_round  BIGINT NOT NULL,
    endpoint        TEXT   NOT NULL,
    attempted_at    TIMESTAMP NOT NULL,
    response_status BIGINT,
    error           TEXT
);
CREATE INDEX webhook_attempts_event_id ON webhook_attempts (event_id, delivery_round);

-- Leases for work only one replica may do at a time (the reconciler, the webhook dispatcher),
-- claimed and renewed by compare-and-set on (holder, expires_at).
CREATE TABLE leases (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

-- When the reconciler may next query a pending order at the provider: it backs off per order
-- so abandoned orders do not cost a query every pass. NULL means "as soon as it is old enough".
ALTER TABLE orders ADD COLUMN reconcile_after TIMESTAMP;
