-- +goose Up
CREATE TABLE orders (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id         text        NOT NULL,
    pizza               text        NOT NULL,
    qty                 integer     NOT NULL CHECK (qty > 0),
    region              text        NOT NULL,
    status              text        NOT NULL CHECK (status IN ('ORDERED', 'RECEIVED', 'COOKED', 'DELIVERY_STARTED', 'CANCELLED', 'REJECTED')),
    reject_reason       text        CHECK (reject_reason IN ('NO_OPEN_STORE', 'STORE_BUSY')),
    retry_after_seconds integer,
    store_id            text,
    idempotency_key     text,
    placed_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- The same key from the same customer is the same order.
CREATE UNIQUE INDEX orders_idempotency ON orders (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- +goose Down
DROP TABLE orders;
