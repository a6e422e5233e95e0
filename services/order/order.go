// Package order owns orders: placing them (after a synchronous availability check with the store
// service, behind a circuit breaker), cancelling them (once the store service, which owns an
// order it has received, accepted the cancellation: a synchronous call behind a breaker of its
// own), and keeping their status current from the other services' events.
//
// Each rule has its file: order.go the types, New and the reads; place.go placing with the
// availability check; groupcommit.go writing placed orders together; cancel.go cancelling;
// fold.go the consumer, folding events into orders; http.go its internal API and client.go the
// client callers use; metrics.go the pizza_orders gauge.
package order

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sony/gobreaker/v2"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Producer names this service on its events.
const Producer = "order"

// MaxQty is the most pizzas one order may ask for.
const MaxQty = 100

// Order is an order as its owner knows it.
type Order struct {
	ID                string                 `json:"id"`
	CustomerID        string                 `json:"customerId"`
	Pizza             string                 `json:"pizza"`
	Qty               int                    `json:"qty"`
	Region            string                 `json:"region"`
	Status            lifecycle.Status       `json:"status"`
	RejectReason      lifecycle.RejectReason `json:"rejectReason,omitempty"`
	RetryAfterSeconds int                    `json:"retryAfterSeconds,omitempty"`
	StoreID           string                 `json:"storeId,omitempty"`
	PlacedAt          time.Time              `json:"placedAt"`
	UpdatedAt         time.Time              `json:"updatedAt"`
}

// PlaceInput is an order to place.
type PlaceInput struct {
	CustomerID     string `json:"customerId"`
	Pizza          string `json:"pizza"`
	Qty            int    `json:"qty"`
	Region         string `json:"region"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

// Store is what the order service asks the store service synchronously; the store service's
// client is one.
type Store interface {
	// AnyOpen is the availability check.
	AnyOpen(ctx context.Context, region string) (bool, error)
	// CancelOrder asks the store to cancel an order: nil when it did (or had), an *errs.Error
	// CONFLICT when the order is cooked (or was rejected) already.
	CancelOrder(ctx context.Context, orderID string) error
}

// Config tunes the synchronous calls to the store service and their breakers.
type Config struct {
	// CheckTimeout bounds one availability call (default 1s).
	CheckTimeout time.Duration
	// CancelTimeout bounds one call asking the store to cancel an order (default 5s): it waits
	// for the order's row, which a racing markCooked may hold.
	CancelTimeout time.Duration
	// TripAfter consecutive failures open a breaker (default 5). The availability check and the
	// cancel call each have their own breaker with these settings.
	TripAfter uint32
	// OpenFor is how long the open breaker refuses calls before letting probes through (default 10s).
	OpenFor time.Duration
	// Probes is how many calls the half-open breaker lets through; that many successes close it
	// (default 1).
	Probes uint32
	Logger *slog.Logger
}

// Service is the order service's logic.
type Service struct {
	pool          *pgxpool.Pool
	outbox        *outbox.Outbox
	store         Store
	cfg           Config
	breaker       *gobreaker.CircuitBreaker[bool]
	cancelBreaker *gobreaker.CircuitBreaker[struct{}]
	openedAt      atomic.Pointer[time.Time] // the availability breaker's last opening (monotonic)
	checks        flights                   // availability checks in flight, by region
	groups        groups
}

// New returns the service.
func New(pool *pgxpool.Pool, ob *outbox.Outbox, store Store, cfg Config) *Service {
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = time.Second
	}
	if cfg.CancelTimeout <= 0 {
		cfg.CancelTimeout = 5 * time.Second
	}
	if cfg.TripAfter == 0 {
		cfg.TripAfter = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 10 * time.Second
	}
	if cfg.Probes == 0 {
		cfg.Probes = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{pool: pool, outbox: ob, store: store, cfg: cfg}
	s.breaker = gobreaker.NewCircuitBreaker[bool](gobreaker.Settings{
		Name:        "store-availability",
		MaxRequests: cfg.Probes,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.TripAfter },
		// A caller that gave up is no evidence about the store.
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				now := time.Now()
				s.openedAt.Store(&now)
			}
			cfg.Logger.Warn("store availability breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	s.cancelBreaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "store-cancel",
		MaxRequests: cfg.Probes,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.TripAfter },
		// The store's answer, whatever it is, is a working store.
		IsSuccessful: func(err error) bool {
			switch errs.CodeOf(err) {
			case errs.Conflict, errs.NotFound, errs.BadUserInput:
				return true
			}
			return err == nil
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			cfg.Logger.Warn("store cancel breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	return s
}

// BreakerState is the availability breaker's state: closed, half-open or open.
func (s *Service) BreakerState() gobreaker.State { return s.breaker.State() }

// CancelBreakerState is the state of the breaker on the calls asking the store to cancel.
func (s *Service) CancelBreakerState() gobreaker.State { return s.cancelBreaker.State() }

const columns = `id, customer_id, pizza, qty, region, status, COALESCE(reject_reason, ''),
	COALESCE(retry_after_seconds, 0), COALESCE(store_id, ''), placed_at, updated_at`

func scanOrder(row pgx.CollectableRow) (Order, error) {
	var (
		o      Order
		id     int64
		status string
		reason string
	)
	err := row.Scan(&id, &o.CustomerID, &o.Pizza, &o.Qty, &o.Region, &status, &reason,
		&o.RetryAfterSeconds, &o.StoreID, &o.PlacedAt, &o.UpdatedAt)
	o.ID = strconv.FormatInt(id, 10)
	o.Status = lifecycle.Status(status)
	o.RejectReason = lifecycle.ShownReason(o.Status, lifecycle.RejectReason(reason))
	if o.Status != lifecycle.Rejected { // retry-after goes with the reason
		o.RetryAfterSeconds = 0
	}
	return o, err
}

func (s *Service) byKey(ctx context.Context, customerID, key string) (Order, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM orders WHERE customer_id = $1 AND idempotency_key = $2`, customerID, key)
	if err != nil {
		return Order{}, err
	}
	return pgx.CollectExactlyOneRow(rows, scanOrder)
}

// Get returns one order.
func (s *Service) Get(ctx context.Context, id string) (Order, error) {
	n, err := input.ParseID(id)
	if err != nil {
		return Order{}, errs.Errorf(errs.NotFound, "no order %q", id)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM orders WHERE id = $1`, n)
	if err != nil {
		return Order{}, err
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanOrder)
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, errs.Errorf(errs.NotFound, "no order %s", id)
	}
	return o, err
}
