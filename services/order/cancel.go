// Cancelling an order: the store service decides, asked synchronously behind a breaker of its
// own; then the cancellation is recorded here and announced.

package order

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/sony/gobreaker/v2"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Cancel cancels an order. The store service decides whether it can: it owns the pizza once it
// has the order, and of a racing cancel and markCooked it lets exactly one take effect. So an
// ORDERED or RECEIVED order is cancelled only after the store, asked synchronously through a
// breaker, said yes (it cancels the order it holds, or remembers the cancellation for an order
// still on its way); then it is recorded CANCELLED and announced with order.cancelled. The store
// saying no (cooked already) is a CONFLICT with its reason; the store unreachable, failing or shut
// out by the open breaker is UNAVAILABLE (retry), and nothing is written here. An order known
// cooked, delivered or rejected is a CONFLICT without asking; a cancelled one is returned as it
// is.
func (s *Service) Cancel(ctx context.Context, id string) (Order, error) {
	o, err := s.Get(ctx, id)
	if err != nil {
		return Order{}, err
	}
	switch o.Status {
	case lifecycle.Cancelled:
		return o, nil
	case lifecycle.Ordered, lifecycle.Received:
	case lifecycle.Rejected:
		return Order{}, errs.Errorf(errs.Conflict, "order %s was rejected (%s) and cannot be cancelled", id, o.RejectReason)
	default:
		return Order{}, errs.Errorf(errs.Conflict, "order %s is already %s and can no longer be cancelled", id, o.Status)
	}
	if err := s.askStoreToCancel(ctx, o.ID); err != nil {
		return Order{}, err
	}
	// The store has cancelled it: record that even if our caller has gone meanwhile. (Its
	// store.order_cancelled event would record it too, a little later.)
	return s.recordCancel(context.WithoutCancel(ctx), o.ID)
}

// askStoreToCancel asks the store service, through the cancel breaker, to cancel an order.
func (s *Service) askStoreToCancel(ctx context.Context, id string) error {
	_, err := s.cancelBreaker.Execute(func() (struct{}, error) {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CancelTimeout)
		defer cancel()
		err := s.store.CancelOrder(cctx, id)
		if err != nil && ctx.Err() != nil {
			return struct{}{}, errCallerGone // the caller's own cancel or deadline, not the store's fault
		}
		return struct{}{}, err
	})
	if err == nil {
		return nil
	}
	switch errs.CodeOf(err) {
	case errs.Conflict, errs.NotFound, errs.BadUserInput:
		return err // the store's answer, with its reason
	}
	if ctx.Err() != nil {
		return errs.Errorf(errs.Unavailable, "request cancelled")
	}
	if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
		s.cfg.Logger.WarnContext(ctx, "store cancel call failed", "order_id", id, "err", err)
	}
	return errs.Errorf(errs.Unavailable, "the store service could not be asked to cancel order %s; retry shortly", id)
}

// recordCancel records a cancellation the store accepted: CANCELLED, announced with
// order.cancelled, unless it is recorded already (a concurrent cancel, or the store's event).
func (s *Service) recordCancel(ctx context.Context, id string) (Order, error) {
	n, err := input.ParseID(id)
	if err != nil {
		return Order{}, err
	}
	var o Order
	err = outbox.InTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM orders WHERE id = $1 FOR UPDATE`, n)
		if err != nil {
			return err
		}
		if o, err = pgx.CollectExactlyOneRow(rows, scanOrder); err != nil || o.Status == lifecycle.Cancelled {
			return err
		}
		rows, err = tx.Query(ctx, `UPDATE orders SET status = 'CANCELLED', updated_at = now() WHERE id = $1 RETURNING `+columns, n)
		if err != nil {
			return err
		}
		if o, err = pgx.CollectExactlyOneRow(rows, scanOrder); err != nil {
			return err
		}
		ev, err := outbox.NewEvent(lifecycle.OrderCancelled, o.ID, Producer, lifecycle.Payload{})
		if err != nil {
			return err
		}
		return s.outbox.Write(ctx, tx, ev)
	})
	return o, err
}
