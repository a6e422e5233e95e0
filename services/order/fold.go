// Folding: the consumer entry point, keeping each order's status current from the other services'
// events with the lattice.

package order

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Keys are the routing keys the order service consumes.
// store.order_cancelled records a cancellation the store accepted even when this service failed
// between the store's answer and its own record of it.
var Keys = []string{
	lifecycle.StoreOrderReceived, lifecycle.StoreOrderRejected, lifecycle.StoreOrderCooked, lifecycle.StoreOrderCancelled,
	lifecycle.DeliveryStartedEvent,
}

// Consume is the order service's consumer entry point (an outbox.BatchPreparer): it folds
// another service's events into their orders' statuses with the lattice, set-based. It queues in
// b the statement that locks the orders (in id order, so concurrent batches cannot deadlock),
// which the consumer sends with its BEGIN; the handler it returns joins the fresh events in Go in
// their order, and writes back the orders that changed with one statement sent with the COMMIT.
// An order that store.order_cancelled turns CANCELLED is announced with order.cancelled, as
// Cancel would have.
func (s *Service) Consume(b *pgx.Batch, events []outbox.Event) outbox.BatchHandler {
	type fold struct {
		status, storeID, reason string
		changed                 bool
	}
	type step struct {
		id      int64
		status  lifecycle.Status
		payload lifecycle.Payload
		ev      outbox.Event
	}
	var ids []int64
	for _, ev := range events {
		if _, ok := lifecycle.StatusOf(ev.Type); !ok {
			continue
		}
		if n, err := input.ParseID(ev.OrderID); err == nil { // a bad id fails in the handler
			ids = append(ids, n)
		}
	}
	orders := make(map[int64]*fold, len(ids))
	if len(ids) > 0 {
		var (
			id int64
			f  fold
		)
		b.Queue(db.CustomPlans) // planned for these ids: the table starts empty
		b.Queue(`
SELECT id, status, COALESCE(store_id, ''), COALESCE(reject_reason, '') FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).Query(
			func(rows pgx.Rows) error {
				_, err := pgx.ForEachRow(rows, []any{&id, &f.status, &f.storeID, &f.reason}, func() error {
					o := f
					orders[id] = &o
					return nil
				})
				return err
			})
	}
	return func(ctx context.Context, tx pgx.Tx, events []outbox.Event) error {
		steps := make([]step, 0, len(events))
		for _, ev := range events {
			st, ok := lifecycle.StatusOf(ev.Type)
			if !ok {
				continue
			}
			var p lifecycle.Payload
			if err := ev.DecodePayload(&p); err != nil {
				return err
			}
			n, err := input.ParseID(ev.OrderID)
			if err != nil {
				return fmt.Errorf("event for order %q: %w", ev.OrderID, err)
			}
			steps = append(steps, step{n, st, p, ev})
		}
		for _, st := range steps {
			o := orders[st.id]
			if o == nil {
				s.cfg.Logger.WarnContext(ctx, "event for an unknown order ignored", "order_id", st.ev.OrderID, "event_id", st.ev.ID, "type", st.ev.Type)
				continue
			}
			next := string(lifecycle.Join(lifecycle.Status(o.status), st.status))
			storeID, reason := o.storeID, o.reason
			if storeID == "" {
				storeID = st.payload.StoreID
			}
			if next == string(lifecycle.Rejected) && reason == "" {
				reason = string(st.payload.RejectReason)
			}
			if next == string(lifecycle.Cancelled) && o.status != next {
				// The store accepted a cancellation this service has not recorded (it failed,
				// or has not got there yet, after the store's answer): record it as Cancel
				// would, announced with order.cancelled, so every cancelled order has one.
				ev, err := outbox.NewEvent(lifecycle.OrderCancelled, st.ev.OrderID, Producer, lifecycle.Payload{})
				if err != nil {
					return err
				}
				if err := s.outbox.Write(outbox.EventContext(ctx, st.ev), tx, ev); err != nil {
					return err
				}
			}
			if next != o.status || storeID != o.storeID || reason != o.reason {
				o.status, o.storeID, o.reason, o.changed = next, storeID, reason, true
			}
		}
		var upd struct {
			ids                     []int64
			status, storeID, reason []string
		}
		for n, o := range orders {
			if o.changed {
				upd.ids, upd.status = append(upd.ids, n), append(upd.status, o.status)
				upd.storeID, upd.reason = append(upd.storeID, o.storeID), append(upd.reason, o.reason)
			}
		}
		if len(upd.ids) == 0 {
			return nil
		}
		// Written back with the COMMIT: nothing here needs its answer.
		return outbox.ExecAtCommit(ctx, tx, `
UPDATE orders SET status = u.status, store_id = NULLIF(u.store_id, ''), reject_reason = NULLIF(u.reject_reason, ''), updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, status, store_id, reject_reason)
WHERE orders.id = u.id`, upd.ids, upd.status, upd.storeID, upd.reason)
	}
}
