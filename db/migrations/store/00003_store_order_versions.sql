-- +goose NO TRANSACTION
-- Live boards (the storeOrders subscription): each store order gets a version that goes up by one
-- with every change, set in the statement that makes the change, and carried by the store's
-- events with the row; a board that saw version v has missed nothing up to v. Rows that exist
-- already start at 1. ADD COLUMN with a constant default rewrites nothing.
--
-- The board's replay reads a store's unfinished orders (store_orders_by_store) and those that
-- changed in the last day: store_orders_board finds the latter. It is built concurrently, as
-- store_orders takes every order's insert (see the outbox's 00004 for why, and why each index is
-- dropped before it is built).

-- +goose Up
ALTER TABLE store_orders ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 1;
DROP INDEX CONCURRENTLY IF EXISTS store_orders_board;
CREATE INDEX CONCURRENTLY store_orders_board ON store_orders (store_id, updated_at) WHERE store_id IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS store_orders_board;
ALTER TABLE store_orders DROP COLUMN IF EXISTS version;
