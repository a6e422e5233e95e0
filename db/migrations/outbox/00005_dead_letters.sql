-- +goose Up
-- Messages dead-lettered for this service, parked here from its RabbitMQ dead-letter queue
-- (<queue>.dlq) so that an operator can list them (AMQP cannot list a queue without consuming
-- it), replay them onto the service's own queue, or discard them. A row lives until it is
-- replayed or discarded. dedupe_key (the eventId, or for a message that is no event a hash of its
-- body) makes a redelivery from the DLQ update its row instead of adding a second one.
CREATE TABLE outbox_dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key       text        NOT NULL UNIQUE,
    message_id       text        NOT NULL DEFAULT '',
    event_id         uuid,
    event_type       text        NOT NULL DEFAULT '',
    order_id         text        NOT NULL DEFAULT '',
    routing_key      text        NOT NULL DEFAULT '',
    reason           text        NOT NULL,
    error            text        NOT NULL DEFAULT '',
    attempts         integer     NOT NULL DEFAULT 0,
    content_type     text        NOT NULL DEFAULT '',
    headers          jsonb       NOT NULL DEFAULT '{}',
    body             bytea       NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE outbox_dead_letters;
