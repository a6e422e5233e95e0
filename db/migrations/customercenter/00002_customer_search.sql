-- +goose NO TRANSACTION
-- The call center's customer search (the customers query): customers whose id starts with what
-- the agent typed. A prefix is a range in byte order, so the index is in the "C" collation
-- whatever the database's; rows whose details have not arrived yet (no customer) are left out.
-- Built concurrently: mypage takes a write for every event of every order (see the outbox's 00004
-- for why, and why the index is dropped before it is built). customer_id is set once per row, so
-- the index costs no update that was HOT before.

-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS mypage_customer_prefix;
CREATE INDEX CONCURRENTLY mypage_customer_prefix ON mypage ((customer_id COLLATE "C")) WHERE customer_id <> '';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS mypage_customer_prefix;
