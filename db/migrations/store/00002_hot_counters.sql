-- +goose Up
-- stores.unfinished changes with every order a store receives, cooks or loses. With the counter in
-- an index every such change wrote new index entries (no HOT update); the open stores of a region
-- are few, so the assignment sorts them itself and the index only finds them. Free space on each
-- page keeps the counter's new row versions on the same page.
DROP INDEX stores_open_by_region;
CREATE INDEX stores_open_by_region ON stores (region) WHERE open;
ALTER TABLE stores SET (fillfactor = 50);

-- +goose Down
ALTER TABLE stores RESET (fillfactor);
DROP INDEX stores_open_by_region;
CREATE INDEX stores_open_by_region ON stores (region, unfinished, id) WHERE open;
