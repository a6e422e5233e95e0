-- +goose Up
-- A relay job now carries every event its transaction wrote (args.events, with the distinct
-- args.orderIds), so a busy transaction costs one job row, not one per event. outbox_events shows
-- them one event per row, as jobs written before this migration (one event each, as args) too.
DROP INDEX river_job_order_id;
CREATE INDEX river_job_order_ids ON river_job USING gin ((args->'orderIds')) WHERE kind = 'outbox_relay';
CREATE VIEW outbox_events AS
SELECT j.id AS job_id, e.position, e.event,
       e.event->>'eventId' AS event_id, e.event->>'type' AS type, e.event->>'orderId' AS order_id,
       j.queue, j.state, j.attempt, j.created_at, j.finalized_at
FROM river_job j
CROSS JOIN LATERAL jsonb_array_elements(COALESCE(j.args->'events', jsonb_build_array(j.args)))
    WITH ORDINALITY AS e(event, position)
WHERE j.kind = 'outbox_relay';

-- +goose Down
DROP VIEW outbox_events;
DROP INDEX river_job_order_ids;
CREATE INDEX river_job_order_id ON river_job ((args->>'orderId')) WHERE kind = 'outbox_relay';
