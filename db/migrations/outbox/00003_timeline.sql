-- +goose Up
-- What the operator's order timeline reads: every event of one order, written (the relay jobs)
-- and consumed (the inbox), found by its orderId.
ALTER TABLE outbox_inbox ADD COLUMN order_id text NOT NULL DEFAULT '';
CREATE INDEX outbox_inbox_order_id ON outbox_inbox (order_id) WHERE order_id <> '';
CREATE INDEX river_job_order_id ON river_job ((args->>'orderId')) WHERE kind = 'outbox_relay';

-- +goose Down
DROP INDEX river_job_order_id;
DROP INDEX outbox_inbox_order_id;
ALTER TABLE outbox_inbox DROP COLUMN order_id;
