-- +goose Up
-- The consumer side of the outbox pattern: every applied delivery leaves its eventId here, in the
-- same transaction as its effect, so a redelivered event is recognised and skipped.
CREATE TABLE outbox_inbox (
    event_id    uuid        PRIMARY KEY,
    event_type  text        NOT NULL,
    consumed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_inbox_consumed_at ON outbox_inbox (consumed_at);

-- +goose Down
DROP TABLE outbox_inbox;
