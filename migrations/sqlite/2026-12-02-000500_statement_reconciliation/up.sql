-- Statement reconciliation (issue 16). Every provider bill file is kept as fetched, with its
-- SHA-256, as evidence for finance; a reconciliation run is one app + provider + Beijing day,
-- and a rerun replaces that day's run and its differences (never appends).
CREATE TABLE bill_files (
    id          TEXT PRIMARY KEY NOT NULL,
    app         TEXT NOT NULL,
    provider    TEXT NOT NULL,
    bill_day    TEXT NOT NULL,        -- Beijing calendar day, yyyy-mm-dd
    sha256      TEXT NOT NULL,        -- lowercase hex of the body as stored
    size_bytes  BIGINT NOT NULL,
    body        BLOB NOT NULL,        -- the untouched bytes (gzip, zip or text as fetched)
    fetched_at  TIMESTAMP NOT NULL,
    UNIQUE (app, provider, bill_day, sha256)
);

CREATE TABLE reconciliation_runs (
    id                    TEXT PRIMARY KEY NOT NULL,
    app                   TEXT NOT NULL,
    provider              TEXT NOT NULL,
    bill_day              TEXT NOT NULL,
    bill_file_id          TEXT REFERENCES bill_files (id),
    status                TEXT NOT NULL,   -- matched | differences | failed
    failure_reason        TEXT,
    bill_payments_count   BIGINT NOT NULL,
    bill_gross            BIGINT NOT NULL,
    bill_settlement_gross BIGINT NOT NULL,
    bill_refunds_count    BIGINT NOT NULL,
    bill_refunds          BIGINT NOT NULL,
    bill_fees             BIGINT NOT NULL, -- signed: fees returned on refunds are negative
    local_payments_count  BIGINT NOT NULL,
    local_gross           BIGINT NOT NULL,
    local_refunds_count   BIGINT NOT NULL,
    local_refunds         BIGINT NOT NULL,
    differences_count     BIGINT NOT NULL,
    held_count            BIGINT NOT NULL,
    finished_at           TIMESTAMP NOT NULL,
    UNIQUE (app, provider, bill_day)
);
CREATE INDEX reconciliation_runs_day ON reconciliation_runs (bill_day, app);

CREATE TABLE reconciliation_differences (
    id                     TEXT PRIMARY KEY NOT NULL,
    run_id                 TEXT NOT NULL REFERENCES reconciliation_runs (id),
    seq                    BIGINT NOT NULL, -- order found in the run (bill order, then local-only)
    kind                   TEXT NOT NULL,   -- payment | refund
    category               TEXT NOT NULL,
    out_trade_no           TEXT NOT NULL,
    out_refund_no          TEXT,
    provider_trade_no      TEXT,
    provider_refund_no     TEXT,
    bill_amount            BIGINT,
    bill_time              TIMESTAMP,
    bill_status            TEXT,
    local_amount           BIGINT,
    local_time             TIMESTAMP,
    local_status           TEXT,
    near_midnight          BOOLEAN NOT NULL,
    held                   BOOLEAN NOT NULL,
    refund_status_differs  BOOLEAN NOT NULL,
    resolution_note        TEXT,
    resolved_by            TEXT,
    resolved_at            TIMESTAMP
);
CREATE INDEX reconciliation_differences_run ON reconciliation_differences (run_id, category, seq);
