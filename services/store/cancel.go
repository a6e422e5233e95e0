// Cancelling: the store owns an order's pizza once it has the order, so it decides a customer's
// cancel (Cancel, which the order service asks synchronously) and applies order.cancelled.

package store

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Cancellation is the store's answer to a cancel it accepted.
type Cancellation struct {
	OrderID string           `json:"orderId"`
	StoreID string           `json:"storeId,omitempty"` // empty: no store had received it
	Status  lifecycle.Status `json:"status"`            // CANCELLED
}

// Cancel decides a customer's cancel: the store owns the pizza once it has the order, so the
// order service asks here, synchronously, before it records a cancellation. The order's row is
// locked as MarkCooked locks it, so of a racing cancel and cook exactly one takes effect:
//
//   - RECEIVED: cancelled, announced with store.order_cancelled; it will never be cooked.
//   - not here yet (order.placed still on its way): a cancelled row stands in for it, announced
//     with store.order_cancelled, and the order is never assigned when it arrives.
//   - CANCELLED already: the same answer again, nothing written.
//   - COOKED: a CONFLICT; delivery is under way. REJECTED (no store was open): a CONFLICT.
//
// The store.order_cancelled event also tells the order service, so a cancellation accepted here
// is recorded there even when the order service fails before it records it itself.
func (s *Service) Cancel(ctx context.Context, orderID string) (Cancellation, error) {
	if _, err := input.ParseID(orderID); err != nil {
		return Cancellation{}, errs.Errorf(errs.NotFound, "no order %q", orderID)
	}
	out := Cancellation{OrderID: orderID, Status: lifecycle.Cancelled}
	err := outbox.InTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		row, err := s.lockOrStandIn(ctx, tx, orderID)
		if err != nil {
			return err
		}
		out.StoreID = row.StoreID
		var cancelled *Order // the store order as the cancel leaves it, when a store has it
		switch row.Status {
		case "": // a stand-in was written
		case lifecycle.Cancelled:
			return nil
		case lifecycle.Received:
			if cancelled, err = s.cancelRow(ctx, tx, row); err != nil {
				return err
			}
		case lifecycle.Rejected:
			return errs.Errorf(errs.Conflict, "order %s was rejected (no store in its region was open) and cannot be cancelled", orderID)
		default:
			return errs.Errorf(errs.Conflict, "order %s is already %s and can no longer be cancelled", orderID, row.Status)
		}
		return s.emit(ctx, tx, lifecycle.StoreOrderCancelled, orderID, lifecycle.Payload{StoreID: out.StoreID}, cancelled)
	})
	return out, err
}

// lockOrStandIn locks the order's row and returns it (StoreID empty when no store has it), or,
// when the store has not heard of the order yet, inserts a CANCELLED row in its place (Status ""):
// the assignment leaves an order it finds already here as it is.
func (s *Service) lockOrStandIn(ctx context.Context, tx pgx.Tx, orderID string) (Order, error) {
	for {
		var (
			o       Order
			status  string
			storeID *int64
		)
		err := tx.QueryRow(ctx, `SELECT status, store_id, pizza, qty, received_at, version FROM store_orders WHERE order_id = $1 FOR UPDATE`,
			orderID).Scan(&status, &storeID, &o.Pizza, &o.Qty, &o.ReceivedAt, &o.Version)
		if err == nil || !errors.Is(err, pgx.ErrNoRows) {
			o.OrderID, o.Status = orderID, lifecycle.Status(status)
			if storeID != nil {
				o.StoreID = strconv.FormatInt(*storeID, 10)
			}
			return o, err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO store_orders (order_id, status) VALUES ($1, 'CANCELLED') ON CONFLICT (order_id) DO NOTHING`, orderID)
		if err != nil || tag.RowsAffected() == 1 {
			return Order{OrderID: orderID}, err
		}
		// The order arrived under us (its assignment committed first): lock that.
	}
}

// cancelRow cancels an order whose row tx holds locked, freeing its store when it was RECEIVED
// there, and returns the store order as it now is (nil when no store has it).
func (s *Service) cancelRow(ctx context.Context, tx pgx.Tx, row Order) (*Order, error) {
	if _, err := tx.Exec(ctx, `UPDATE store_orders SET status = 'CANCELLED', updated_at = now(), version = version + 1 WHERE order_id = $1`, row.OrderID); err != nil {
		return nil, err
	}
	if row.StoreID == "" {
		return nil, nil
	}
	if row.Status == lifecycle.Received {
		id, err := strconv.ParseInt(row.StoreID, 10, 64)
		if err != nil {
			return nil, err
		}
		if err := addUnfinished(ctx, tx, id, -1); err != nil {
			return nil, err
		}
	}
	row.Status, row.Version = lifecycle.Cancelled, row.Version+1 // the row is locked: this is what the update made
	return &row, nil
}

// cancel applies order.cancelled. The order service writes it only after Cancel accepted the
// cancellation here, so the order is normally CANCELLED already and nothing changes. Events
// written by an earlier version, which cancelled without asking the store, may find it in any
// state: then the cancel wins, even over a cooked order, whose pizza never leaves for delivery,
// so every view still ends CANCELLED. A cancellation that arrives before the order is remembered.
func (s *Service) cancel(ctx context.Context, tx pgx.Tx, orderID string) error {
	row, err := s.lockOrStandIn(ctx, tx, orderID)
	if err != nil || row.Status == "" || row.Status == lifecycle.Cancelled {
		return err
	}
	cancelled, err := s.cancelRow(ctx, tx, row)
	if err != nil || cancelled == nil {
		return err // or it was rejected: no store holds it, nothing to announce
	}
	return s.emit(ctx, tx, lifecycle.StoreOrderCancelled, orderID, lifecycle.Payload{StoreID: row.StoreID}, cancelled)
}
