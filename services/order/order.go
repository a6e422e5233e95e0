// Package order owns orders: placing them (after a synchronous availability check with the store
// service, behind a circuit breaker), cancelling them (once the store service, which owns an
// order it has received, accepted the cancellation: a synchronous call behind a breaker of its
// own), and keeping their status current from the other services' events.
package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sony/gobreaker/v2"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
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

// Place records an order. With an open store in its region it is ORDERED and announced with
// order.placed; with none it is REJECTED / NO_OPEN_STORE; when the store service is slow, failing
// or shut out by the breaker it is REJECTED / STORE_BUSY with the seconds until the breaker lets
// calls through again. Rejections are announced with order.rejected. The same idempotency key
// from the same customer returns the first order.
func (s *Service) Place(ctx context.Context, in PlaceInput) (Order, error) {
	in, err := validate(in)
	if err != nil {
		return Order{}, err
	}
	if in.IdempotencyKey != "" {
		if o, err := s.byKey(ctx, in.CustomerID, in.IdempotencyKey); !errors.Is(err, pgx.ErrNoRows) {
			return o, err
		}
	}
	status, reason, retryAfter, err := s.check(ctx, in.Region)
	if err != nil {
		return Order{}, err
	}

	return s.write(ctx, &placement{in: in, status: status, reason: reason, retryAfter: retryAfter})
}

// Group commit. Orders placed at the same time are written together: one transaction, their
// inserts pipelined in one round trip, their events in one statement, one commit (one WAL flush)
// for all. A placement joins the queue; at most maxCommitters placements at a time lead, each
// committing what is queued (up to maxGroup) and handing the lead to the first still waiting.
// Under light load a group is one order and nobody waits; under heavy load groups grow instead
// of transactions queueing for connections and the disk.
const (
	maxCommitters = 2
	maxGroup      = 64
	// commitTimeout bounds a group's transaction. The group does not end with one caller's
	// context: others share it, and an order its caller gave up on may still be written.
	commitTimeout = 10 * time.Second
)

// placement is one order on its way into a group commit.
type placement struct {
	ctx        context.Context
	in         PlaceInput
	status     lifecycle.Status
	reason     lifecycle.RejectReason
	retryAfter int
	lead       chan struct{} // receives the lead
	led        bool          // it leads or was handed the lead (under groups.mu): never twice
	done       chan struct{} // closed once o or err is set
	o          Order
	err        error
}

// groups is the group-commit queue.
type groups struct {
	mu      sync.Mutex
	queue   []*placement
	leaders int
}

// write queues p for the next group commit and returns its order.
func (s *Service) write(ctx context.Context, p *placement) (Order, error) {
	p.ctx, p.lead, p.done = ctx, make(chan struct{}, 1), make(chan struct{})
	g := &s.groups
	g.mu.Lock()
	g.queue = append(g.queue, p)
	leads := g.leaders < maxCommitters
	if leads {
		g.leaders++
		p.led = true
	}
	g.mu.Unlock()
	if leads {
		s.lead()
	}
	return s.await(ctx, p)
}

// await waits for p's group to commit, leading a group whenever p is handed the lead.
func (s *Service) await(ctx context.Context, p *placement) (Order, error) {
	for {
		select {
		case <-p.done:
			// Another leader may have committed p after p was handed the lead: pass it on, or
			// the slot it stands for is lost.
			select {
			case <-p.lead:
				s.lead()
			default:
			}
			if errors.Is(p.err, pgx.ErrNoRows) { // a concurrent request with the same key won
				return s.byKey(ctx, p.in.CustomerID, p.in.IdempotencyKey)
			}
			return p.o, p.err
		case <-p.lead:
			s.lead()
		}
	}
}

// lead commits one group, then passes the lead on to the first placement waiting that does not
// lead yet, or gives it up.
func (s *Service) lead() {
	g := &s.groups
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	g.mu.Unlock()

	if len(group) > 0 {
		s.commit(group)
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	for _, next := range g.queue {
		if !next.led { // one already leading, or handed the lead by another leader, will commit anyway
			next.led = true
			next.lead <- struct{}{} // buffered
			return
		}
	}
	g.leaders--
}

// commit writes a group in one transaction. When it fails and nothing was written, each
// placement is tried alone, so one order's failure is not the others'. A COMMIT whose answer was
// lost may have committed anyway: then every placement gets the error, as a lone caller would,
// since writing them again could record each order twice. The whole attempt, retries included,
// is bounded by commitTimeout.
func (s *Service) commit(group []*placement) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(group[0].ctx), commitTimeout)
	defer cancel()
	s.commitIn(ctx, group)
}

func (s *Service) commitIn(ctx context.Context, group []*placement) {
	unknown, err := s.insert(ctx, group)
	if err != nil && !unknown && len(group) > 1 {
		for _, p := range group {
			s.commitIn(ctx, []*placement{p})
		}
		return
	}
	for _, p := range group {
		if err != nil {
			p.err = err
		}
		close(p.done)
	}
}

// insert writes a group's orders and events in one transaction, the events inserted with the
// COMMIT; unknown reports that the error, if any, left the COMMIT's outcome unknown.
func (s *Service) insert(ctx context.Context, group []*placement) (unknown bool, err error) {
	const q = `
INSERT INTO orders (customer_id, pizza, qty, region, status, reject_reason, retry_after_seconds, idempotency_key)
VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, 0), NULLIF($8, ''))
ON CONFLICT (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING ` + columns
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{}) // the BEGIN goes out with the inserts: one round trip for both
	for _, p := range group {
		in := p.in
		b.Queue(q, in.CustomerID, in.Pizza, in.Qty, in.Region, p.status, p.reason, p.retryAfter, in.IdempotencyKey)
	}
	// An outbox transaction: its events are inserted with the COMMIT, and published straight
	// after it.
	ctx, tx, br := outbox.Begin(ctx, s.pool, b)
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	events, err := readGroup(br, group)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := s.outbox.Write(ctx, tx, events...); err != nil {
		return false, err
	}
	err = tx.Commit(ctx)
	return errors.Is(err, outbox.ErrCommitUnknown), err
}

// readGroup reads the BEGIN and the inserts of a group's batch, and returns the events to write.
func readGroup(br pgx.BatchResults, group []*placement) ([]outbox.Event, error) {
	if _, err := br.Exec(); err != nil { // BEGIN
		return nil, err
	}
	events := make([]outbox.Event, 0, len(group))
	for _, p := range group {
		rows, err := br.Query()
		if err != nil {
			return nil, err
		}
		p.o, p.err = pgx.CollectExactlyOneRow(rows, scanOrder)
		if errors.Is(p.err, pgx.ErrNoRows) {
			continue // the key's first order is returned instead
		}
		if p.err != nil {
			return nil, p.err
		}
		ev, err := placedEvent(p.o)
		if err != nil {
			return nil, err
		}
		outbox.Stamp(p.ctx, &ev) // each event continues its own request's trace
		events = append(events, ev)
	}
	return events, nil
}

// placedEvent announces a recorded order: order.placed, or order.rejected with its reason.
func placedEvent(o Order) (outbox.Event, error) {
	typ := lifecycle.OrderPlaced
	if o.Status == lifecycle.Rejected {
		typ = lifecycle.OrderRejected
	}
	return outbox.NewEvent(typ, o.ID, Producer, lifecycle.Payload{
		OrderDetails: lifecycle.OrderDetails{
			CustomerID: o.CustomerID, Pizza: o.Pizza, Qty: o.Qty, Region: o.Region, PlacedAt: o.PlacedAt,
		},
		RejectReason:      o.RejectReason,
		RetryAfterSeconds: o.RetryAfterSeconds,
	})
}

func validate(in PlaceInput) (PlaceInput, error) {
	var err error
	if in.CustomerID, err = httpapi.Key("customerId", in.CustomerID); err != nil {
		return in, err
	}
	if in.Pizza, err = httpapi.Text("pizza", in.Pizza, 100); err != nil {
		return in, err
	}
	if in.Region, err = httpapi.Text("region", in.Region, 64); err != nil {
		return in, err
	}
	if in.Qty < 1 || in.Qty > MaxQty {
		return in, errs.Invalid("qty", "must be between 1 and %d", MaxQty)
	}
	if in.IdempotencyKey != "" {
		if in.IdempotencyKey, err = httpapi.Text("idempotencyKey", in.IdempotencyKey, 128); err != nil {
			return in, err
		}
	}
	return in, nil
}

// check asks the store service through the breaker whether the region has an open store.
// Concurrent checks of one region share one call (see flights).
func (s *Service) check(ctx context.Context, region string) (lifecycle.Status, lifecycle.RejectReason, int, error) {
	open, err := s.checks.do(ctx, region, func(cctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(cctx, s.cfg.CheckTimeout)
		defer cancel()
		return s.breaker.Execute(func() (bool, error) {
			open, err := s.store.AnyOpen(cctx, region)
			if err != nil && context.Cause(cctx) == errCallerGone {
				return false, errCallerGone // its callers' own cancels or deadlines, not the store's fault
			}
			return open, err
		})
	})
	switch {
	case err == nil && open:
		return lifecycle.Ordered, "", 0, nil
	case err == nil:
		return lifecycle.Rejected, lifecycle.NoOpenStore, 0, nil
	case ctx.Err() != nil:
		return "", "", 0, errs.Errorf(errs.Unavailable, "request cancelled")
	}
	if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
		s.cfg.Logger.WarnContext(ctx, "store availability check failed", "region", region, "err", err)
	}
	return lifecycle.Rejected, lifecycle.StoreBusy, s.retryAfter(), nil
}

// flights coalesces availability checks: a check of a region that has one in flight waits for
// that call's answer instead of making its own (the answer is at most one call old, and the store
// re-checks when the order arrives anyway). A call ends early, cancelled with errCallerGone, only
// when every caller waiting on it has gone.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	waiters int
	cancel  context.CancelCauseFunc
	done    chan struct{}
	open    bool
	err     error
}

func (f *flights) do(ctx context.Context, key string, call func(context.Context) (bool, error)) (bool, error) {
	f.mu.Lock()
	fl := f.m[key]
	if fl == nil {
		cctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		fl = &flight{cancel: cancel, done: make(chan struct{})}
		if f.m == nil {
			f.m = make(map[string]*flight)
		}
		f.m[key] = fl
		go func() {
			open, err := call(cctx)
			f.mu.Lock()
			if f.m[key] == fl {
				delete(f.m, key)
			}
			f.mu.Unlock()
			fl.open, fl.err = open, err
			cancel(nil)
			close(fl.done)
		}()
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		return fl.open, fl.err
	case <-ctx.Done():
		f.mu.Lock()
		if fl.waiters--; fl.waiters == 0 {
			if f.m[key] == fl {
				delete(f.m, key) // whoever comes next asks afresh
			}
			fl.cancel(errCallerGone)
		}
		f.mu.Unlock()
		return false, ctx.Err()
	}
}

// errCallerGone marks a check abandoned by its caller; the breaker ignores it.
var errCallerGone = errors.New("the caller went away")

// retryAfter is the whole seconds until the breaker lets calls through again, at least 1.
func (s *Service) retryAfter() int {
	opened := s.openedAt.Load()
	if s.breaker.State() != gobreaker.StateOpen || opened == nil {
		return 1
	}
	left := min(s.cfg.OpenFor-time.Since(*opened), s.cfg.OpenFor)
	return max(1, int(math.Ceil(left.Seconds())))
}

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
	n, err := httpapi.ParseID(id)
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
	n, err := httpapi.ParseID(id)
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
		if n, err := httpapi.ParseID(ev.OrderID); err == nil { // a bad id fails in the handler
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
			n, err := httpapi.ParseID(ev.OrderID)
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
