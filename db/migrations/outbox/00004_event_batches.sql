-- +goose NO TRANSACTION
-- A relay job now carries every event its transaction wrote (args.events, with the distinct
-- args.orderIds), so a busy transaction costs one job row, not one per event. outbox_events shows
-- them one event per row, as jobs written before this migration (one event each, as args) too.
-- The indexes are built concurrently: river_job takes every write, an order's included, and a
-- plain CREATE INDEX would hold them all for as long as it scans the table. Outside a transaction a
-- failed run leaves what it did; each index is dropped before it is built, so a run after a
-- failure builds it afresh instead of keeping an invalid one.

-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS river_job_order_ids;
CREATE INDEX CONCURRENTLY river_job_order_ids ON river_job USING gin ((args->'orderIds'))
    WHERE kind = 'outbox_relay';
-- Jobs written before this migration keep their own, smaller index; new jobs are not in it.
DROP INDEX CONCURRENTLY IF EXISTS river_job_legacy_order_id;
CREATE INDEX CONCURRENTLY river_job_legacy_order_id ON river_job ((args->>'orderId'))
    WHERE kind = 'outbox_relay' AND args ? 'orderId';
DROP INDEX CONCURRENTLY IF EXISTS river_job_order_id;
CREATE OR REPLACE VIEW outbox_events AS
SELECT j.id AS job_id, e.position, e.event,
       e.event->>'eventId' AS event_id, e.event->>'type' AS type, e.event->>'orderId' AS order_id,
       j.queue, j.state, j.attempt, j.created_at, j.finalized_at
FROM river_job j
CROSS JOIN LATERAL jsonb_array_elements(COALESCE(j.args->'events', jsonb_build_array(j.args)))
    WITH ORDINALITY AS e(event, position)
WHERE j.kind = 'outbox_relay';

-- +goose Down
DROP VIEW IF EXISTS outbox_events;
DROP INDEX CONCURRENTLY IF EXISTS river_job_order_id;
CREATE INDEX CONCURRENTLY river_job_order_id ON river_job ((args->>'orderId')) WHERE kind = 'outbox_relay';
DROP INDEX CONCURRENTLY IF EXISTS river_job_legacy_order_id;
DROP INDEX CONCURRENTLY IF EXISTS river_job_order_ids;
