// Package customercenter owns the myPage view (CQRS): one row per order, folded from every
// lifecycle event with the lattice, never reading another service's data, and announced with
// customercenter.mypage_updated after each change for live subscriptions.
package customercenter

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/api"
	"github.com/1588-pizza/pizza/services/lifecycle"
)

// Producer names this service on its events.
const Producer = "customercenter"

// Row is one order on a customer's myPage.
type Row struct {
	lifecycle.View
	UpdatedAt time.Time `json:"updatedAt"`
	Version   int64     `json:"version"`
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
	COALESCE(placed_at, 'epoch'), updated_at, version`

func scanRow(r pgx.CollectableRow) (Row, error) {
	var (
		row            Row
		status, reason string
	)
	err := r.Scan(&row.OrderID, &row.CustomerID, &row.Pizza, &row.Qty, &row.Region, &status, &reason,
		&row.StoreID, &row.DeliveryID, &row.PlacedAt, &row.UpdatedAt, &row.Version)
	row.Status, row.RejectReason = lifecycle.Status(status), lifecycle.RejectReason(reason)
	if row.PlacedAt.Equal(time.Unix(0, 0)) {
		row.PlacedAt = time.Time{}
	}
	return row, err
}

// Handle folds one lifecycle event into the order's row; when the row changed, its version goes
// up by one and the whole row is announced.
func (s *Service) Handle(ctx context.Context, tx pgx.Tx, ev outbox.Event) error {
	if _, ok := lifecycle.StatusOf(ev.Type); !ok {
		return nil
	}
	// Make sure the row exists, then lock it: concurrent events of one order serialise here.
	if _, err := tx.Exec(ctx, `INSERT INTO mypage (order_id) VALUES ($1) ON CONFLICT (order_id) DO NOTHING`, ev.OrderID); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT `+columns+` FROM mypage WHERE order_id = $1 FOR UPDATE`, ev.OrderID)
	if err != nil {
		return err
	}
	row, err := pgx.CollectExactlyOneRow(rows, scanRow)
	if err != nil {
		return err
	}
	next, changed, err := row.View.Apply(ev)
	if err != nil {
		return err
	}
	if !changed {
		return nil
	}
	rows, err = tx.Query(ctx, `
UPDATE mypage SET customer_id = $2, pizza = $3, qty = $4, region = $5, status = $6, reject_reason = $7,
	store_id = $8, delivery_id = $9, placed_at = NULLIF($10, 'epoch'::timestamptz), updated_at = now(), version = version + 1
WHERE order_id = $1 RETURNING `+columns,
		ev.OrderID, next.CustomerID, next.Pizza, next.Qty, next.Region, string(next.Status), string(next.RejectReason),
		next.StoreID, next.DeliveryID, placedAt(next.PlacedAt))
	if err != nil {
		return err
	}
	row, err = pgx.CollectExactlyOneRow(rows, scanRow)
	if err != nil {
		return err
	}
	out, err := outbox.NewEvent(lifecycle.MyPageUpdated, ev.OrderID, Producer, row.Shown())
	if err != nil {
		return err
	}
	return s.outbox.Write(ctx, tx, out)
}

func placedAt(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0)
	}
	return t
}

// Shown is the row as clients see it: a reject reason only on a REJECTED order.
func (r Row) Shown() Row {
	r.RejectReason = r.ShownRejectReason()
	return r
}

// MaxLimit caps how many rows one myPage query returns.
const MaxLimit = 500

// ByCustomer returns a customer's rows, newest first.
func (s *Service) ByCustomer(ctx context.Context, customerID string, limit int) ([]Row, error) {
	customerID, err := api.Text("customerId", customerID, 64)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxLimit {
		return nil, api.Invalid("limit", "must be between 1 and %d", MaxLimit)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM mypage WHERE customer_id = $1
ORDER BY placed_at DESC NULLS LAST, order_id DESC LIMIT $2`, customerID, limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, scanRow)
	for i := range out {
		out[i] = out[i].Shown()
	}
	return out, err
}

// ByOrder returns one order's row.
func (s *Service) ByOrder(ctx context.Context, orderID string) (Row, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM mypage WHERE order_id = $1`, orderID)
	if err != nil {
		return Row{}, err
	}
	row, err := pgx.CollectExactlyOneRow(rows, scanRow)
	if errors.Is(err, pgx.ErrNoRows) {
		return Row{}, api.Errorf(api.NotFound, "no myPage row for order %s", orderID)
	}
	return row.Shown(), err
}

// Routes serves the customercenter's internal API:
//
//	GET /mypage?customerId=C&limit=N   a customer's rows, newest first (limit default 50)
//	GET /mypage/orders/{orderId}       one order's row
func (s *Service) Routes(mux *http.ServeMux, logger *slog.Logger) {
	h := func(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
		return api.Handle(logger, f)
	}
	mux.HandleFunc("GET /mypage", h(func(w http.ResponseWriter, r *http.Request) error {
		limit := 50
		if l := r.URL.Query().Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil {
				return api.Invalid("limit", "must be a number")
			}
			limit = n
		}
		rows, err := s.ByCustomer(r.Context(), r.URL.Query().Get("customerId"), limit)
		if err != nil {
			return err
		}
		api.WriteJSON(w, http.StatusOK, rows)
		return nil
	}))
	mux.HandleFunc("GET /mypage/orders/{orderId}", h(func(w http.ResponseWriter, r *http.Request) error {
		row, err := s.ByOrder(r.Context(), r.PathValue("orderId"))
		if err != nil {
			return err
		}
		api.WriteJSON(w, http.StatusOK, row)
		return nil
	}))
}
