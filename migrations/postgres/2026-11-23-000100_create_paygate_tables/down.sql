DROP TABLE outbox_events;
DROP TABLE api_keys;
DROP TABLE anomalies;
DROP TABLE callbacks;
DROP TABLE refunds;
DROP TABLE orders;
