-- +goose Up
CREATE TABLE stores (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL,
    region     text        NOT NULL,
    open       boolean     NOT NULL,
    -- orders received and not yet cooked or cancelled: assignment picks the open store with fewest
    unfinished integer     NOT NULL DEFAULT 0 CHECK (unfinished >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The availability check and the assignment read only open stores of one region.
CREATE INDEX stores_open_by_region ON stores (region, unfinished, id) WHERE open;
CREATE INDEX stores_by_region ON stores (region, id);

-- One row per order the store service has heard of. store_id is NULL when no store took it
-- (rejected) or when its cancellation arrived before the order itself.
CREATE TABLE store_orders (
    order_id    text        PRIMARY KEY,
    store_id    bigint      REFERENCES stores (id),
    customer_id text        NOT NULL DEFAULT '',
    pizza       text        NOT NULL DEFAULT '',
    qty         integer     NOT NULL DEFAULT 0,
    region      text        NOT NULL DEFAULT '',
    status      text        NOT NULL CHECK (status IN ('RECEIVED', 'COOKED', 'REJECTED', 'CANCELLED')),
    received_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX store_orders_by_store ON store_orders (store_id, status, received_at);

-- +goose Down
DROP TABLE store_orders;
DROP TABLE stores;
