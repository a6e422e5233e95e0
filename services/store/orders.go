// A store's orders: listing them, the live board's starting rows, and marking one cooked (which
// locks the order's row as a cancel does, so of a racing cancel and cook exactly one wins).

package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Orders lists a store's orders, optionally of one status, oldest first.
func (s *Service) Orders(ctx context.Context, storeID int64, status lifecycle.Status) ([]Order, error) {
	if status != "" && !status.Valid() {
		return nil, errs.Invalid("status", "unknown status %q", status)
	}
	// Joined to the store's row, as Board is: an unknown store gives no row, in one round trip.
	const q = `
SELECT o.order_id, o.store_id, o.pizza, o.qty, o.status, o.received_at, o.version
FROM stores LEFT JOIN store_orders o ON o.store_id = stores.id AND ($2 = '' OR o.status = $2)
WHERE stores.id = $1
ORDER BY o.received_at, o.order_id`
	rows, err := s.pool.Query(ctx, q, storeID, string(status))
	if err != nil {
		return nil, err
	}
	return storeOrders(rows, storeID)
}

// boardLimit bounds a board's replay: a store's unfinished orders come first.
const boardLimit = 500

// boardWindow is how long a finished store order stays on its store's board.
const boardWindow = 24 * time.Hour

// Board is what a store's live board starts from: its unfinished (RECEIVED) orders and those
// that changed within boardWindow, oldest first, at most boardLimit (the unfinished ones first,
// then the most recently changed). One statement, two index scans: store_orders_by_store for the
// unfinished, store_orders_board for the recent; it is joined to the store's row, so that an
// unknown store gives no row (NOT_FOUND) and a store with an empty board one row of NULLs.
func (s *Service) Board(ctx context.Context, storeID int64) ([]Order, error) {
	const q = `
SELECT board.order_id, board.store_id, board.pizza, board.qty, board.status, board.received_at, board.version
FROM stores LEFT JOIN (
	SELECT * FROM (
		SELECT * FROM store_orders WHERE store_id = $1 AND status = 'RECEIVED'
		UNION ALL
		SELECT * FROM store_orders WHERE store_id = $1 AND status <> 'RECEIVED' AND updated_at > now() - $2 * interval '1 second'
	) candidates ORDER BY status <> 'RECEIVED', updated_at DESC LIMIT $3
) board ON true
WHERE stores.id = $1
ORDER BY board.received_at, board.order_id`
	rows, err := s.pool.Query(ctx, q, storeID, int64(boardWindow/time.Second), boardLimit)
	if err != nil {
		return nil, err
	}
	return storeOrders(rows, storeID)
}

// storeOrders reads the rows of a store's orders joined to its row (stores LEFT JOIN): none is an
// unknown store (NOT_FOUND), and one row of NULLs a store with no such orders ([], not null).
func storeOrders(rows pgx.Rows, storeID int64) ([]Order, error) {
	found, out := false, []Order{}
	var (
		orderID, pizza, status *string
		id, qty, version       *int64
		receivedAt             *time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&orderID, &id, &pizza, &qty, &status, &receivedAt, &version}, func() error {
		found = true
		if orderID != nil { // not the NULLs of a store without such orders
			out = append(out, Order{OrderID: *orderID, StoreID: strconv.FormatInt(*id, 10), Pizza: *pizza, Qty: int(*qty),
				Status: lifecycle.Status(*status), ReceivedAt: *receivedAt, Version: *version})
		}
		return nil
	})
	if err == nil && !found {
		return nil, errs.Errorf(errs.NotFound, "no store %d", storeID)
	}
	return out, err
}

// Order returns one store order.
func (s *Service) Order(ctx context.Context, orderID string) (Order, error) {
	if _, err := input.ParseID(orderID); err != nil {
		return Order{}, errs.Errorf(errs.NotFound, "no store order %q", orderID)
	}
	const q = `SELECT ` + orderColumns + ` FROM store_orders WHERE order_id = $1 AND store_id IS NOT NULL`
	rows, err := s.pool.Query(ctx, q, orderID)
	if err != nil {
		return Order{}, err
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanOrder)
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, errs.Errorf(errs.NotFound, "no store order %s", orderID)
	}
	return o, err
}

// MarkCooked records that the store finished cooking an order it received. It locks the order's
// row as Cancel does, so a racing cancel and cook are decided one after the other: once cooked,
// the order can no longer be cancelled, and cooking a cancelled (or rejected) order is a
// CONFLICT. Cooking a cooked one changes nothing.
func (s *Service) MarkCooked(ctx context.Context, orderID string) (Order, error) {
	var out Order
	err := outbox.InTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		const q = `SELECT ` + orderColumns + ` FROM store_orders WHERE order_id = $1 AND store_id IS NOT NULL FOR UPDATE`
		rows, err := tx.Query(ctx, q, orderID)
		if err != nil {
			return err
		}
		o, err := pgx.CollectExactlyOneRow(rows, scanOrder)
		if errors.Is(err, pgx.ErrNoRows) {
			return errs.Errorf(errs.NotFound, "no store order %s", orderID)
		}
		if err != nil {
			return err
		}
		switch o.Status {
		case lifecycle.Cooked:
			out = o
			return nil
		case lifecycle.Received:
		case lifecycle.Cancelled:
			return errs.Errorf(errs.Conflict, "order %s was cancelled and cannot be cooked", orderID)
		default:
			return errs.Errorf(errs.Conflict, "order %s is %s and cannot be cooked", orderID, o.Status)
		}
		if _, err := tx.Exec(ctx, `UPDATE store_orders SET status = 'COOKED', updated_at = now(), version = version + 1 WHERE order_id = $1`, orderID); err != nil {
			return err
		}
		id, err := strconv.ParseInt(o.StoreID, 10, 64)
		if err != nil {
			return err
		}
		if err := addUnfinished(ctx, tx, id, -1); err != nil {
			return err
		}
		o.Status, o.Version = lifecycle.Cooked, o.Version+1 // the row is locked: this is what the update made
		out = o
		return s.emit(ctx, tx, lifecycle.StoreOrderCooked, orderID, lifecycle.Payload{StoreID: o.StoreID}, &o)
	})
	return out, err
}
