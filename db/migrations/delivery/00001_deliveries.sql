-- +goose Up
-- One row per order delivery has heard of: STARTED when its cooked event started a delivery,
-- CANCELLED when it was cancelled (before or after starting: a cancellation that arrives first
-- is remembered, so a cooked event arriving later starts nothing).
CREATE TABLE deliveries (
    order_id   text        PRIMARY KEY,
    id         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    store_id   text        NOT NULL DEFAULT '',
    started    boolean     NOT NULL DEFAULT false,
    status     text        NOT NULL CHECK (status IN ('STARTED', 'CANCELLED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE deliveries;
