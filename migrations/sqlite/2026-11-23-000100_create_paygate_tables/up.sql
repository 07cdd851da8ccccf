-- paygate's tables on SQLite. Timestamps are UTC, stored by diesel as ISO text; ids are
-- prefixed ULIDs, so ORDER BY id is creation order. Status columns are not CHECKed so that a
-- newer binary's status cannot make an older one fail to start; the store parses every row.

CREATE TABLE orders (
    id                TEXT    NOT NULL PRIMARY KEY,
    provider          TEXT    NOT NULL,
    app               TEXT    NOT NULL,
    channel           TEXT    NOT NULL,
    out_trade_no      TEXT    NOT NULL,
    amount            BIGINT  NOT NULL CHECK (amount >= 0),
    currency          TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    description       TEXT,
    status            TEXT    NOT NULL,
    provider_trade_no TEXT,
    payer_id          TEXT,
    pay_params        TEXT,
    refunded_amount   BIGINT  NOT NULL DEFAULT 0
                              CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    metadata          TEXT,
    request_hash      TEXT    NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    paid_at           TIMESTAMP,
    closed_at         TIMESTAMP,
    expires_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    version           BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (app, out_trade_no)
);
CREATE INDEX orders_status_id ON orders (status, id);
CREATE INDEX orders_app_id ON orders (app, id);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE INDEX orders_paid_at ON orders (paid_at);
CREATE INDEX orders_out_trade_no ON orders (out_trade_no);
CREATE INDEX orders_status_expires_at ON orders (status, expires_at);

CREATE TABLE refunds (
    id                 TEXT   NOT NULL PRIMARY KEY,
    order_id           TEXT   NOT NULL REFERENCES orders (id),
    out_refund_no      TEXT   NOT NULL UNIQUE,
    amount             BIGINT NOT NULL CHECK (amount > 0),
    reason             TEXT,
    status             TEXT   NOT NULL,
    provider_refund_id TEXT,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    succeeded_at       TIMESTAMP,
    version            BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refunds_order_id ON refunds (order_id);
CREATE INDEX refunds_status_created_at ON refunds (status, created_at);

CREATE TABLE callbacks (
    id           TEXT NOT NULL PRIMARY KEY,
    provider     TEXT NOT NULL,
    app          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    received_at  TIMESTAMP NOT NULL,
    body         BLOB NOT NULL,
    content_type TEXT,
    verdict      TEXT NOT NULL,
    reason       TEXT,
    order_id     TEXT REFERENCES orders (id)
);
CREATE INDEX callbacks_order_id ON callbacks (order_id);
CREATE INDEX callbacks_received_at ON callbacks (received_at);

CREATE TABLE anomalies (
    id          TEXT NOT NULL PRIMARY KEY,
    order_id    TEXT REFERENCES orders (id),
    provider    TEXT NOT NULL,
    app         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    callback_id TEXT REFERENCES callbacks (id),
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX anomalies_order_id ON anomalies (order_id);

CREATE TABLE api_keys (
    id           TEXT NOT NULL PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    key_prefix   TEXT NOT NULL,
    apps         TEXT NOT NULL DEFAULT '[]',
    created_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP,
    last_used_at TIMESTAMP
);

CREATE TABLE outbox_events (
    id              TEXT   NOT NULL PRIMARY KEY,
    kind            TEXT   NOT NULL,
    order_id        TEXT   NOT NULL REFERENCES orders (id),
    refund_id       TEXT   REFERENCES refunds (id),
    payload         TEXT   NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    delivered_at    TIMESTAMP,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error      TEXT
);
CREATE INDEX outbox_events_pending ON outbox_events (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_events_order_id ON outbox_events (order_id);
