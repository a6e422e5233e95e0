-- +goose Up
-- The myPage view: one row per order, folded from every lifecycle event with the lattice.
-- Details (customer, pizza, ...) arrive with order.placed / order.rejected, possibly after other
-- events, so they may be empty for a while. version only increases, once per change.
CREATE TABLE mypage (
    order_id      text        PRIMARY KEY,
    customer_id   text        NOT NULL DEFAULT '',
    pizza         text        NOT NULL DEFAULT '',
    qty           integer     NOT NULL DEFAULT 0,
    region        text        NOT NULL DEFAULT '',
    status        text        NOT NULL DEFAULT '',
    reject_reason text        NOT NULL DEFAULT '',
    store_id      text        NOT NULL DEFAULT '',
    delivery_id   text        NOT NULL DEFAULT '',
    placed_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT 0
);
CREATE INDEX mypage_by_customer ON mypage (customer_id, placed_at DESC, order_id DESC);

-- +goose Down
DROP TABLE mypage;
