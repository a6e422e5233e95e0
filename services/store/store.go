// Package store owns the chain stores and the orders they receive: registering and opening
// stores, the availability check the order service calls, assigning each placed order to the
// least busy open store of its region, marking orders cooked, and deciding cancellations of the
// orders it has (of a racing cancel and cook, exactly one takes effect).
package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Store is one chain store.
type Store struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Region string `json:"region"`
	Open   bool   `json:"open"`
}

// Order is an order as a store sees it.
type Order struct {
	OrderID    string           `json:"orderId"`
	StoreID    string           `json:"storeId"`
	Pizza      string           `json:"pizza"`
	Qty        int              `json:"qty"`
	Status     lifecycle.Status `json:"status"`
	ReceivedAt time.Time        `json:"receivedAt"`
	// Version goes up by one with every change of the order here, in the statement that makes
	// it: a board that saw version v has missed nothing up to v.
	Version int64 `json:"version"`
}

// orderColumns are what scanOrder reads.
const orderColumns = `order_id, store_id, pizza, qty, status, received_at, version`

// EventPayload is what the store's events carry: the lifecycle fields every consumer folds, and,
// on store.order_received, store.order_cooked and store.order_cancelled of an order a store had,
// the store order as that change left it (with its version), which the BFF pushes to the store's
// live board without asking here. Consumers that fold the lifecycle ignore it.
type EventPayload struct {
	lifecycle.Payload
	StoreOrder *Order `json:"storeOrder,omitempty"`
}

// RegisterInput is a new store.
type RegisterInput struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Open   *bool  `json:"open"`
}

// Service is the store service's logic over its database and outbox.
type Service struct {
	pool   *pgxpool.Pool
	check  *pgxpool.Pool // the availability check's own connections (pool when not set)
	outbox *outbox.Outbox
}

// New returns the service.
func New(pool *pgxpool.Pool, ob *outbox.Outbox) *Service {
	return &Service{pool: pool, check: pool, outbox: ob}
}

// WithCheckPool gives the availability check connections of its own, so that it never waits
// for one behind the service's other work (its consumer's backlog, cooks queued on a row lock):
// the order service's breaker then opens when this database is slow, not when the pool is busy.
func (s *Service) WithCheckPool(p *pgxpool.Pool) *Service {
	s.check = p
	return s
}

// Producer names this service on its events.
const Producer = "store"

// Register adds a store.
func (s *Service) Register(ctx context.Context, in RegisterInput) (Store, error) {
	name, err := httpapi.Text("name", in.Name, 100)
	if err != nil {
		return Store{}, err
	}
	region, err := httpapi.Text("region", in.Region, 64)
	if err != nil {
		return Store{}, err
	}
	if in.Open == nil {
		return Store{}, errs.Invalid("open", "is required")
	}
	const q = `INSERT INTO stores (name, region, open) VALUES ($1, $2, $3) RETURNING id, name, region, open`
	return scanStore(s.pool.QueryRow(ctx, q, name, region, *in.Open))
}

// SetOpen opens or closes a store.
func (s *Service) SetOpen(ctx context.Context, id int64, open bool) (Store, error) {
	const q = `UPDATE stores SET open = $2 WHERE id = $1 RETURNING id, name, region, open`
	st, err := scanStore(s.pool.QueryRow(ctx, q, id, open))
	if errors.Is(err, pgx.ErrNoRows) {
		return Store{}, errs.Errorf(errs.NotFound, "no store %d", id)
	}
	return st, err
}

// Get returns one store.
func (s *Service) Get(ctx context.Context, id int64) (Store, error) {
	const q = `SELECT id, name, region, open FROM stores WHERE id = $1`
	st, err := scanStore(s.pool.QueryRow(ctx, q, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Store{}, errs.Errorf(errs.NotFound, "no store %d", id)
	}
	return st, err
}

// List returns the stores of a region, or all when region is empty.
func (s *Service) List(ctx context.Context, region string) ([]Store, error) {
	const q = `SELECT id, name, region, open FROM stores WHERE $1 = '' OR region = $1 ORDER BY region, id`
	rows, err := s.pool.Query(ctx, q, region)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Store, error) { return scanStore(r) })
}

// AnyOpen is the availability check: is any store of the region open? One index-only probe.
func (s *Service) AnyOpen(ctx context.Context, region string) (bool, error) {
	const q = `SELECT EXISTS (SELECT 1 FROM stores WHERE region = $1 AND open)`
	var open bool
	err := s.check.QueryRow(ctx, q, region).Scan(&open)
	return open, err
}

// Orders lists a store's orders, optionally of one status, oldest first.
func (s *Service) Orders(ctx context.Context, storeID int64, status lifecycle.Status) ([]Order, error) {
	if status != "" && !status.Valid() {
		return nil, errs.Invalid("status", "unknown status %q", status)
	}
	if _, err := s.Get(ctx, storeID); err != nil {
		return nil, err
	}
	const q = `
SELECT ` + orderColumns + ` FROM store_orders
WHERE store_id = $1 AND ($2 = '' OR status = $2) ORDER BY received_at, order_id`
	rows, err := s.pool.Query(ctx, q, storeID, string(status))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOrder)
}

// BoardLimit bounds a board's replay: a store's unfinished orders come first.
const BoardLimit = 500

// BoardWindow is how long a finished store order stays on its store's board.
const BoardWindow = 24 * time.Hour

// Board is what a store's live board starts from: its unfinished (RECEIVED) orders and those
// that changed within BoardWindow, oldest first, at most BoardLimit (the unfinished ones first,
// then the most recently changed). Two index scans: store_orders_by_store for the unfinished,
// store_orders_board for the recent.
func (s *Service) Board(ctx context.Context, storeID int64) ([]Order, error) {
	if _, err := s.Get(ctx, storeID); err != nil {
		return nil, err
	}
	const q = `
SELECT ` + orderColumns + ` FROM (
	SELECT * FROM (
		SELECT * FROM store_orders WHERE store_id = $1 AND status = 'RECEIVED'
		UNION
		SELECT * FROM store_orders WHERE store_id = $1 AND updated_at > now() - $2 * interval '1 second'
	) candidates ORDER BY status <> 'RECEIVED', updated_at DESC LIMIT $3
) board ORDER BY received_at, order_id`
	rows, err := s.pool.Query(ctx, q, storeID, int64(BoardWindow/time.Second), BoardLimit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOrder)
}

// Order returns one store order.
func (s *Service) Order(ctx context.Context, orderID string) (Order, error) {
	if _, err := httpapi.ParseID(orderID); err != nil {
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
		if err := decode(ev, &pl.p); err != nil {
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

// Keys are the routing keys the store service consumes.
var Keys = []string{lifecycle.OrderPlaced, lifecycle.OrderCancelled}

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
	if _, err := httpapi.ParseID(orderID); err != nil {
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

// emit writes one of the store's events; so, when set, is the store order as the change left it.
func (s *Service) emit(ctx context.Context, tx pgx.Tx, typ, orderID string, p lifecycle.Payload, so *Order) error {
	ev, err := outbox.NewEvent(typ, orderID, Producer, EventPayload{Payload: p, StoreOrder: so})
	if err != nil {
		return err
	}
	return s.outbox.Write(ctx, tx, ev)
}

func decode(ev outbox.Event, p *lifecycle.Payload) error {
	if err := ev.DecodePayload(p); err != nil {
		return fmt.Errorf("%s: %w", ev.Type, err)
	}
	return nil
}

func scanStore(row pgx.Row) (Store, error) {
	var (
		st Store
		id int64
	)
	err := row.Scan(&id, &st.Name, &st.Region, &st.Open)
	st.ID = strconv.FormatInt(id, 10)
	return st, err
}

func scanOrder(row pgx.CollectableRow) (Order, error) {
	var (
		o       Order
		storeID int64
		status  string
	)
	err := row.Scan(&o.OrderID, &storeID, &o.Pizza, &o.Qty, &status, &o.ReceivedAt, &o.Version)
	o.StoreID = strconv.FormatInt(storeID, 10)
	o.Status = lifecycle.Status(status)
	return o, err
}
