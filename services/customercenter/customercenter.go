// Package customercenter owns the myPage view (CQRS): one row per order, folded from every
// lifecycle event with the lattice, never reading another service's data, and announced with
// customercenter.mypage_updated after each change for live subscriptions.
package customercenter

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Producer names this service on its events.
const Producer = "customercenter"

// Row is one order on a customer's myPage.
type Row struct {
	lifecycle.View
	// Steps says when the order reached each status it reached: the time (OccurredAt) of the
	// first event to arrive that said so.
	Steps     Steps     `json:"steps"`
	UpdatedAt time.Time `json:"updatedAt"`
	Version   int64     `json:"version"`
}

// Steps maps each status an order reached to when it reached it.
type Steps map[lifecycle.Status]time.Time

// record notes that the order reached st at, unless the step is known already: a step keeps
// the time it was first told (a redelivered event, or the second of two events for the same
// status, such as order.cancelled and store.order_cancelled, changes nothing and is not
// announced again). It reports whether the steps changed.
func (s *Steps) record(st lifecycle.Status, at time.Time) bool {
	if *s == nil {
		*s = Steps{}
	}
	if _, ok := (*s)[st]; ok {
		return false
	}
	(*s)[st] = at.UTC()
	return true
}

// Service is the customercenter's logic.
type Service struct {
	pool   *pgxpool.Pool
	outbox *outbox.Outbox
}

// New returns the service.
func New(pool *pgxpool.Pool, ob *outbox.Outbox) *Service { return &Service{pool: pool, outbox: ob} }

// Keys are the routing keys customercenter consumes: every lifecycle event.
var Keys = []string{
	lifecycle.OrderPlaced, lifecycle.OrderRejected, lifecycle.OrderCancelled,
	lifecycle.StoreOrderReceived, lifecycle.StoreOrderRejected, lifecycle.StoreOrderCooked, lifecycle.StoreOrderCancelled,
	lifecycle.DeliveryStartedEvent, lifecycle.DeliveryCancelled,
}

const columns = `order_id, customer_id, pizza, qty, region, status, reject_reason, store_id, delivery_id,
	COALESCE(placed_at, 'epoch'), steps, updated_at, version`

func scanRow(r pgx.CollectableRow) (Row, error) { return scanRowWith(r) }

// scanRowWith scans a row of columns, and then whatever extra points to.
func scanRowWith(r pgx.CollectableRow, extra ...any) (Row, error) {
	var (
		row            Row
		status, reason string
	)
	err := r.Scan(append([]any{&row.OrderID, &row.CustomerID, &row.Pizza, &row.Qty, &row.Region, &status, &reason,
		&row.StoreID, &row.DeliveryID, &row.PlacedAt, &row.Steps, &row.UpdatedAt, &row.Version}, extra...)...)
	row.Status, row.RejectReason = lifecycle.Status(status), lifecycle.RejectReason(reason)
	if row.PlacedAt.Equal(time.Unix(0, 0)) {
		row.PlacedAt = time.Time{}
	}
	return row, err
}

// Consume is the customercenter's consumer entry point (an outbox.BatchPreparer): it folds a
// consumer transaction's lifecycle events into their orders' rows set-based. It queues in b the
// statements that create the rows missing and lock them all (in order-id order, so concurrent
// batches cannot deadlock), which the consumer sends with its BEGIN; the handler it returns folds
// the fresh events in Go in their order, and writes the changed rows back with one statement
// sent with the COMMIT. When a row changed, its version goes up by one and the whole row is
// announced with customercenter.mypage_updated: each change on its own, as if the events had
// been applied one at a time.
func (s *Service) Consume(b *pgx.Batch, events []outbox.Event) outbox.BatchHandler {
	ids := make([]string, 0, len(events))
	for _, ev := range events {
		if _, ok := lifecycle.StatusOf(ev.Type); ok {
			ids = append(ids, ev.OrderID)
		}
	}
	if len(ids) == 0 {
		return func(context.Context, pgx.Tx, []outbox.Event) error { return nil }
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	// Create the missing rows, then lock them all (planned for these ids, not generically: the
	// table starts empty).
	b.Queue(db.CustomPlans)
	b.Queue(`INSERT INTO mypage (order_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (order_id) DO NOTHING`, ids)
	var (
		now    time.Time
		locked []Row
	)
	b.Queue(`SELECT `+columns+`, now() FROM mypage WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, ids).Query(
		func(rows pgx.Rows) (err error) {
			locked, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) { return scanRowWith(r, &now) })
			return err
		})
	return func(ctx context.Context, tx pgx.Tx, events []outbox.Event) error {
		current := make(map[string]*Row, len(locked))
		for i := range locked {
			current[locked[i].OrderID] = &locked[i]
		}
		var changed []*Row
		for _, ev := range events {
			row := current[ev.OrderID]
			st, ok := lifecycle.StatusOf(ev.Type)
			if !ok || row == nil {
				continue
			}
			next, didChange, err := row.View.Apply(ev)
			if err != nil {
				return err
			}
			if newStep := row.Steps.record(st, ev.OccurredAt); !didChange && !newStep {
				continue
			}
			if !slices.Contains(changed, row) {
				changed = append(changed, row)
			}
			row.View, row.UpdatedAt = next, now
			row.Version++
			out, err := outbox.NewEvent(lifecycle.MyPageUpdated, ev.OrderID, Producer, row.shown())
			if err != nil {
				return err
			}
			if err := s.outbox.Write(outbox.EventContext(ctx, ev), tx, out); err != nil {
				return err
			}
		}
		if len(changed) == 0 {
			return nil
		}
		var c struct {
			id, customer, pizza, region, status, reason, store, delivery, steps []string
			qty                                                                 []int32
			placed                                                              []time.Time
			version                                                             []int64
		}
		for _, r := range changed {
			c.id, c.customer, c.pizza, c.region = append(c.id, r.OrderID), append(c.customer, r.CustomerID), append(c.pizza, r.Pizza), append(c.region, r.Region)
			c.status, c.reason = append(c.status, string(r.Status)), append(c.reason, string(r.RejectReason))
			c.store, c.delivery = append(c.store, r.StoreID), append(c.delivery, r.DeliveryID)
			c.qty, c.placed, c.version = append(c.qty, int32(r.Qty)), append(c.placed, placedAt(r.PlacedAt)), append(c.version, r.Version)
			steps, err := json.Marshal(r.Steps)
			if err != nil {
				return err
			}
			c.steps = append(c.steps, string(steps))
		}
		// Written back with the COMMIT: nothing here needs its answer.
		return outbox.ExecAtCommit(ctx, tx, `
UPDATE mypage m SET customer_id = u.customer_id, pizza = u.pizza, qty = u.qty, region = u.region, status = u.status,
	reject_reason = u.reject_reason, store_id = u.store_id, delivery_id = u.delivery_id,
	placed_at = NULLIF(u.placed_at, 'epoch'::timestamptz), updated_at = now(), version = u.version, steps = u.steps::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
	$10::timestamptz[], $11::bigint[], $12::text[])
	AS u(order_id, customer_id, pizza, qty, region, status, reject_reason, store_id, delivery_id, placed_at, version, steps)
WHERE m.order_id = u.order_id`,
			c.id, c.customer, c.pizza, c.qty, c.region, c.status, c.reason, c.store, c.delivery, c.placed, c.version, c.steps)
	}
}

func placedAt(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0)
	}
	return t
}

// shown is the row as clients see it: a reject reason only on a REJECTED order.
func (r Row) shown() Row {
	r.RejectReason = r.ShownRejectReason()
	return r
}

// MaxLimit caps how many rows one myPage query returns.
const MaxLimit = 500

// byCustomer returns a customer's rows, newest first.
func (s *Service) byCustomer(ctx context.Context, customerID string, limit int) ([]Row, error) {
	customerID, err := input.Key("customerId", customerID)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxLimit {
		return nil, errs.Invalid("limit", "must be between 1 and %d", MaxLimit)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM mypage WHERE customer_id = $1
ORDER BY placed_at DESC NULLS LAST, order_id DESC LIMIT $2`, customerID, limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, scanRow)
	for i := range out {
		out[i] = out[i].shown()
	}
	return out, err
}

// byOrder returns one order's row.
func (s *Service) byOrder(ctx context.Context, orderID string) (Row, error) {
	if _, err := input.ParseID(orderID); err != nil {
		return Row{}, errs.Errorf(errs.NotFound, "no myPage row for order %q", orderID)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM mypage WHERE order_id = $1`, orderID)
	if err != nil {
		return Row{}, err
	}
	row, err := pgx.CollectExactlyOneRow(rows, scanRow)
	if errors.Is(err, pgx.ErrNoRows) {
		return Row{}, errs.Errorf(errs.NotFound, "no myPage row for order %s", orderID)
	}
	return row.shown(), err
}

// Customer is a customer as myPage knows them.
type Customer struct {
	ID string `json:"id"`
	// Orders counts their myPage rows.
	Orders int64 `json:"orders"`
	// LastOrderAt is when one of their rows last changed.
	LastOrderAt time.Time `json:"lastOrderAt"`
}

// MaxCustomers caps how many customers one search returns.
const MaxCustomers = 100

// Customers finds the customers whose id starts with search, exactly as given (an empty search
// is every customer), most recently active first: the call center's search. The prefix is read
// through mypage_customer_prefix, as a range of ids in byte order; the work grows with the
// matching customers' rows, so an agent types a few characters.
func (s *Service) Customers(ctx context.Context, search string, limit int) ([]Customer, error) {
	if limit < 1 || limit > MaxCustomers {
		return nil, errs.Invalid("limit", "must be between 1 and %d", MaxCustomers)
	}
	search, err := input.KeyPrefix("search", search)
	if err != nil {
		return nil, err
	}
	const (
		all = `
SELECT customer_id, count(*), max(updated_at) FROM mypage WHERE customer_id <> ''
GROUP BY customer_id ORDER BY max(updated_at) DESC, customer_id LIMIT $1`
		from = `
SELECT customer_id, count(*), max(updated_at) FROM mypage
WHERE customer_id <> '' AND (customer_id COLLATE "C") >= $2
GROUP BY customer_id ORDER BY max(updated_at) DESC, customer_id LIMIT $1`
		between = `
SELECT customer_id, count(*), max(updated_at) FROM mypage
WHERE customer_id <> '' AND (customer_id COLLATE "C") >= $2 AND (customer_id COLLATE "C") < $3
GROUP BY customer_id ORDER BY max(updated_at) DESC, customer_id LIMIT $1`
	)
	var rows pgx.Rows
	switch end, bounded := prefixEnd(search); {
	case search == "":
		rows, err = s.pool.Query(ctx, all, limit)
	case bounded:
		rows, err = s.pool.Query(ctx, between, limit, search, end)
	default:
		rows, err = s.pool.Query(ctx, from, limit, search)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Customer])
}

// prefixEnd is the least string greater than every string that starts with prefix, in byte
// order (the "C" collation's, and UTF-8's order of code points): prefix with its last character
// that can go up by one gone up by one, and what follows it cut. There is none when every
// character is the greatest there is.
func prefixEnd(prefix string) (string, bool) {
	r := []rune(prefix)
	for i := len(r) - 1; i >= 0; i-- {
		next := r[i] + 1
		if next >= 0xD800 && next <= 0xDFFF { // surrogates are no characters
			next = 0xE000
		}
		if next <= unicode.MaxRune {
			r[i] = next
			return string(r[:i+1]), true
		}
	}
	return "", false
}

// Routes serves the customercenter's internal API:
//
//	GET /mypage?customerId=C&limit=N   a customer's rows, newest first (limit default 50)
//	GET /mypage/orders/{orderId}       one order's row
//	GET /customers?search=S&limit=N    customers whose id starts with S, most recently active first
func (s *Service) Routes(mux *http.ServeMux, logger *slog.Logger) {
	mux.HandleFunc("GET /mypage", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) ([]Row, error) {
		limit, err := queryLimit(r, 50)
		if err != nil {
			return nil, err
		}
		return s.byCustomer(r.Context(), r.URL.Query().Get("customerId"), limit)
	}))
	mux.HandleFunc("GET /customers", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) ([]Customer, error) {
		limit, err := queryLimit(r, 20)
		if err != nil {
			return nil, err
		}
		return s.Customers(r.Context(), r.URL.Query().Get("search"), limit)
	}))
	mux.HandleFunc("GET /mypage/orders/{orderId}", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) (Row, error) {
		return s.byOrder(r.Context(), r.PathValue("orderId"))
	}))
}

// queryLimit reads the request's limit parameter, or def without one.
func queryLimit(r *http.Request, def int) (int, error) {
	l := r.URL.Query().Get("limit")
	if l == "" {
		return def, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil {
		return 0, errs.Invalid("limit", "must be a number")
	}
	return n, nil
}
