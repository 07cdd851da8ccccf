DROP INDEX orders_next_query_at;
DROP INDEX orders_query_due;
ALTER TABLE orders DROP COLUMN query_attempts;
UPDATE orders SET next_query_at = NULL WHERE next_query_at = created_at;
ALTER TABLE orders RENAME COLUMN next_query_at TO reconcile_after;
