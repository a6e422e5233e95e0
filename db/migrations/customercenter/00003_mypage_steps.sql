-- +goose Up
-- When each status of the order was reached (the time of the event that said so): the steps a
-- customer's myPage shows, ORDERED through DELIVERY_STARTED, or CANCELLED / REJECTED.
-- {"ORDERED": "2026-12-04T10:00:00.123Z", ...}; a step, once known, keeps its time.
ALTER TABLE mypage ADD COLUMN steps jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE mypage DROP COLUMN steps;
