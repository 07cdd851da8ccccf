-- A fair reconciler queue. Each pending order carries when it is next due for a provider query
-- and how many queries found it unpaid; a pass takes half its batch by fewest queries (newest
-- due first), so a new order is reached whatever the backlog, and the rest by longest overdue,
-- so every order is reached. See docs/reliability.md for the bound.
ALTER TABLE orders RENAME COLUMN reconcile_after TO next_query_at;
ALTER TABLE orders ADD COLUMN query_attempts BIGINT NOT NULL DEFAULT 0;
-- An order with a next-query time was queried before; one without is due from its creation.
UPDATE orders SET query_attempts = 1 WHERE next_query_at IS NOT NULL;
UPDATE orders SET next_query_at = created_at WHERE next_query_at IS NULL;
CREATE INDEX orders_query_due ON orders (status, query_attempts, next_query_at);
CREATE INDEX orders_next_query_at ON orders (status, next_query_at);
