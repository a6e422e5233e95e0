// Package store owns the chain stores and the orders they receive: registering and opening
// stores, the availability check the order service calls, assigning each placed order to the
// least busy open store of its region, marking orders cooked, and deciding cancellations of the
// orders it has (of a racing cancel and cook, exactly one takes effect).
//
// Each rule has its file: store.go the stores (registering, opening, the availability check);
// orders.go a store's orders, its board and cooking; assign.go the consumer, assigning placed
// orders; cancel.go cancelling.
package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
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
	name, err := input.Text("name", in.Name, 100)
	if err != nil {
		return Store{}, err
	}
	region, err := input.Text("region", in.Region, 64)
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

// emit writes one of the store's events; so, when set, is the store order as the change left it.
func (s *Service) emit(ctx context.Context, tx pgx.Tx, typ, orderID string, p lifecycle.Payload, so *Order) error {
	ev, err := outbox.NewEvent(typ, orderID, Producer, EventPayload{Payload: p, StoreOrder: so})
	if err != nil {
		return err
	}
	return s.outbox.Write(ctx, tx, ev)
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
