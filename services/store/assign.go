// The consumer: assigning each placed order to the least busy open store of its region (or
// rejecting it), and the stores' unfinished counts its transactions change at their commit.

package store

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Keys are the routing keys the store service consumes.
var Keys = []string{lifecycle.OrderPlaced, lifecycle.OrderCancelled}

// Consume is the store service's consumer entry point (an outbox.BatchPreparer). A batch of
// order.placed only (the steady state) is assigned set-based: the statements that lock the orders
// already known and read the regions' open stores are queued in b, which the consumer sends with
// its BEGIN; the handler it returns inserts all the new store orders in one statement. Anything
// else (an order.cancelled among them) is applied event by event, in order (see oneByOne).
func (s *Service) Consume(b *pgx.Batch, events []outbox.Event) outbox.BatchHandler {
	for _, ev := range events {
		if ev.Type != lifecycle.OrderPlaced {
			return s.oneByOne
		}
	}
	return s.prepareAssign(b, events)
}

// oneByOne applies events one at a time, in their order: each order.placed assigned alone (its
// statements sent, then applied), each order.cancelled applied with cancel.
func (s *Service) oneByOne(ctx context.Context, tx pgx.Tx, events []outbox.Event) error {
	for _, ev := range events {
		ctx := outbox.EventContext(ctx, ev)
		var err error
		switch ev.Type {
		case lifecycle.OrderPlaced:
			err = s.assign(ctx, tx, ev)
		case lifecycle.OrderCancelled:
			err = s.cancel(ctx, tx, ev.OrderID)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// assign assigns one placed order: prepareAssign's statements, sent on their own, then its handler.
func (s *Service) assign(ctx context.Context, tx pgx.Tx, ev outbox.Event) error {
	b := &pgx.Batch{}
	apply := s.prepareAssign(b, []outbox.Event{ev})
	if b.Len() > 0 { // nothing queued when the event cannot be read: apply says so
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	return apply(ctx, tx, []outbox.Event{ev})
}

// prepareAssign gives each placed order to the open store of its region with the fewest
// unfinished orders (counting this transaction's own assignments), or rejects it when none is
// open now. An order already known (assigned, rejected, or cancelled before it arrived) is left
// as it is. Stores are read without a lock (locks go store orders first and the counters last of
// all): "fewest unfinished" is a heuristic, and a choice a few milliseconds stale is as good.
func (s *Service) prepareAssign(b *pgx.Batch, events []outbox.Event) outbox.BatchHandler {
	type placed struct {
		ev      outbox.Event
		p       lifecycle.Payload
		storeID int64 // 0: rejected, no open store
	}
	byOrder := make(map[string]*placed, len(events))
	var ids, regions []string
	for _, ev := range events {
		if byOrder[ev.OrderID] != nil {
			continue // the same order twice (a re-sent event): the first decides
		}
		pl := &placed{ev: ev}
		if err := ev.DecodePayload(&pl.p); err != nil {
			return func(context.Context, pgx.Tx, []outbox.Event) error { return err }
		}
		byOrder[ev.OrderID] = pl
		ids = append(ids, ev.OrderID)
		if !slices.Contains(regions, pl.p.Region) {
			regions = append(regions, pl.p.Region)
		}
	}
	slices.Sort(ids)
	// Lock the orders already here first, in id order as every batch does: they were assigned,
	// rejected or cancelled before, and stay as they are. With the open stores' loads, planned
	// for these arguments.
	type load struct {
		ID         int64
		Region     string
		Unfinished int64
	}
	var (
		known []string
		loads []load
	)
	b.Queue(db.CustomPlans)
	b.Queue(`SELECT order_id FROM store_orders WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, ids).Query(
		func(rows pgx.Rows) (err error) {
			known, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
	b.Queue(`SELECT id, region, unfinished FROM stores WHERE region = ANY($1) AND open ORDER BY region, unfinished, id`, regions).Query(
		func(rows pgx.Rows) (err error) {
			loads, err = pgx.CollectRows(rows, pgx.RowToStructByPos[load])
			return err
		})
	return func(ctx context.Context, tx pgx.Tx, fresh []outbox.Event) error {
		isFresh := make(map[string]bool, len(fresh))
		for _, ev := range fresh {
			isFresh[ev.OrderID] = true
		}
		pending, _ := outbox.Deferred(ctx, tx, loadKey{}, newLoadDeltas)
		chosen := make(map[int64]int64) // this batch's assignments so far, by store
		var ins struct {
			orderID, customer, pizza, region, status []string
			storeID, qty                             []int64
		}
		for _, id := range ids {
			if slices.Contains(known, id) || !isFresh[id] {
				continue
			}
			pl := byOrder[id]
			var best *load
			for i := range loads {
				l := &loads[i]
				if l.Region != pl.p.Region {
					continue
				}
				if best == nil || l.Unfinished+int64(pending[l.ID])+chosen[l.ID] < best.Unfinished+int64(pending[best.ID])+chosen[best.ID] {
					best = l
				}
			}
			status := lifecycle.Rejected
			if best != nil {
				pl.storeID, status = best.ID, lifecycle.Received
				chosen[best.ID]++
			}
			ins.orderID, ins.storeID, ins.status = append(ins.orderID, id), append(ins.storeID, pl.storeID), append(ins.status, string(status))
			ins.customer, ins.pizza, ins.qty, ins.region = append(ins.customer, pl.p.CustomerID), append(ins.pizza, pl.p.Pizza), append(ins.qty, int64(pl.p.Qty)), append(ins.region, pl.p.Region)
		}
		if len(ins.orderID) == 0 {
			return nil
		}
		rows, err := tx.Query(ctx, `
INSERT INTO store_orders (order_id, store_id, customer_id, pizza, qty, region, status)
SELECT order_id, NULLIF(store_id, 0), customer_id, pizza, qty, region, status
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])
	AS i(order_id, store_id, customer_id, pizza, qty, region, status)
ORDER BY order_id
ON CONFLICT (order_id) DO NOTHING RETURNING order_id, received_at`,
			ins.orderID, ins.storeID, ins.customer, ins.pizza, ins.qty, ins.region, ins.status)
		if err != nil {
			return err
		}
		type insertedRow struct {
			OrderID    string
			ReceivedAt time.Time
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowToStructByPos[insertedRow])
		if err != nil {
			return err
		}
		receivedAt := make(map[string]time.Time, len(inserted))
		for _, r := range inserted {
			receivedAt[r.OrderID] = r.ReceivedAt
		}
		for _, id := range ins.orderID {
			at, ok := receivedAt[id]
			if !ok {
				continue // a concurrent cancellation got there first
			}
			pl := byOrder[id]
			ectx := outbox.EventContext(ctx, pl.ev)
			if pl.storeID == 0 {
				if err := s.emit(ectx, tx, lifecycle.StoreOrderRejected, id, lifecycle.Payload{RejectReason: lifecycle.NoOpenStore}, nil); err != nil {
					return err
				}
				continue
			}
			if err := addUnfinished(ctx, tx, pl.storeID, 1); err != nil {
				return err
			}
			storeID := strconv.FormatInt(pl.storeID, 10)
			received := &Order{OrderID: id, StoreID: storeID, Pizza: pl.p.Pizza, Qty: pl.p.Qty, Status: lifecycle.Received,
				ReceivedAt: at, Version: 1}
			if err := s.emit(ectx, tx, lifecycle.StoreOrderReceived, id, lifecycle.Payload{StoreID: storeID}, received); err != nil {
				return err
			}
		}
		return nil
	}
}

// loadDeltas are changes to stores' unfinished counts that a consumer transaction applies at its
// end, once per store and in store-id order, in the COMMIT's round trip: a store's counter row is
// then locked only for the commit, and concurrent batches that touch several stores queue
// instead of deadlocking.
type loadDeltas map[int64]int

type loadKey struct{}

func newLoadDeltas() loadDeltas { return loadDeltas{} }

func (d loadDeltas) Flush(ctx context.Context, tx pgx.Tx) error {
	if len(d) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(d))
	deltas := make([]int32, len(ids))
	for i, id := range ids {
		deltas[i] = int32(d[id])
	}
	// Both go out with the COMMIT (outbox.ExecAtCommit), the lock before the update.
	if len(ids) > 1 {
		if err := outbox.ExecAtCommit(ctx, tx, `SELECT FROM stores WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, ids); err != nil {
			return err
		}
	}
	return outbox.ExecAtCommit(ctx, tx, `
UPDATE stores SET unfinished = unfinished + d.delta
FROM unnest($1::bigint[], $2::int[]) AS d(id, delta) WHERE stores.id = d.id AND d.delta <> 0`, ids, deltas)
}

// addUnfinished changes a store's unfinished count: at the end of a consumer transaction, or now.
func addUnfinished(ctx context.Context, tx pgx.Tx, storeID int64, delta int) error {
	if d, ok := outbox.Deferred(ctx, tx, loadKey{}, newLoadDeltas); ok {
		d[storeID] += delta
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE stores SET unfinished = unfinished + $2 WHERE id = $1`, storeID, delta)
	return err
}
