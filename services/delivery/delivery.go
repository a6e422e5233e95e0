// Package delivery owns deliveries: it starts one when an order is cooked, and cancels it (or
// never starts it) when the order was cancelled.
package delivery

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Producer names this service on its events.
const Producer = "delivery"

// Status of a delivery.
const (
	Started   = "STARTED"
	Cancelled = "CANCELLED"
)

// Delivery is one order's delivery.
type Delivery struct {
	ID        string    `json:"id"`
	OrderID   string    `json:"orderId"`
	StoreID   string    `json:"storeId,omitempty"`
	Status    string    `json:"status"`
	Started   bool      `json:"started"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Service is the delivery service's logic.
type Service struct {
	pool    *pgxpool.Pool
	outbox  *outbox.Outbox
	consume outbox.BatchPreparer // handle, an event at a time
}

// New returns the service.
func New(pool *pgxpool.Pool, ob *outbox.Outbox) *Service {
	s := &Service{pool: pool, outbox: ob}
	s.consume = outbox.EachEvent(s.handle)
	return s
}

// Keys are the routing keys the delivery service consumes.
var Keys = []string{lifecycle.StoreOrderCooked, lifecycle.OrderCancelled}

// Consume is the delivery service's consumer entry point (an outbox.BatchPreparer): it applies
// each event on its own, with handle.
func (s *Service) Consume(b *pgx.Batch, events []outbox.Event) outbox.BatchHandler {
	return s.consume(b, events)
}

// handle starts a delivery for a cooked order unless the order is known cancelled, and cancels a
// started delivery when the order is cancelled (or remembers the cancellation for later).
func (s *Service) handle(ctx context.Context, tx pgx.Tx, ev outbox.Event) error {
	var p lifecycle.Payload
	if err := ev.DecodePayload(&p); err != nil {
		return err
	}
	for {
		// A row that did not exist cannot be locked: when another event of the order inserted it
		// meanwhile, our insert does nothing and we go round again to apply ours to its row.
		applied, err := s.apply(ctx, tx, ev, p)
		if err != nil || applied {
			return err
		}
	}
}

// apply applies ev; applied is false when the order's row appeared under it.
func (s *Service) apply(ctx context.Context, tx pgx.Tx, ev outbox.Event, p lifecycle.Payload) (applied bool, err error) {
	var (
		id     int64
		status string
	)
	err = tx.QueryRow(ctx, `SELECT id, status FROM deliveries WHERE order_id = $1 FOR UPDATE`, ev.OrderID).Scan(&id, &status)
	known := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	switch ev.Type {
	case lifecycle.StoreOrderCooked:
		if known {
			return true, nil // started already, or cancelled first
		}
		err := tx.QueryRow(ctx, `
INSERT INTO deliveries (order_id, store_id, started, status) VALUES ($1, $2, true, 'STARTED')
ON CONFLICT (order_id) DO NOTHING RETURNING id`, ev.OrderID, p.StoreID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, s.emit(ctx, tx, lifecycle.DeliveryStartedEvent, ev.OrderID, lifecycle.Payload{DeliveryID: strconv.FormatInt(id, 10), StoreID: p.StoreID})
	case lifecycle.OrderCancelled:
		if !known {
			tag, err := tx.Exec(ctx, `INSERT INTO deliveries (order_id, status) VALUES ($1, 'CANCELLED') ON CONFLICT (order_id) DO NOTHING`, ev.OrderID)
			return err == nil && tag.RowsAffected() == 1, err
		}
		if status == Cancelled {
			return true, nil
		}
		if _, err := tx.Exec(ctx, `UPDATE deliveries SET status = 'CANCELLED', updated_at = now() WHERE order_id = $1`, ev.OrderID); err != nil {
			return false, err
		}
		return true, s.emit(ctx, tx, lifecycle.DeliveryCancelled, ev.OrderID, lifecycle.Payload{DeliveryID: strconv.FormatInt(id, 10)})
	}
	return true, nil
}

func (s *Service) emit(ctx context.Context, tx pgx.Tx, typ, orderID string, p lifecycle.Payload) error {
	ev, err := outbox.NewEvent(typ, orderID, Producer, p)
	if err != nil {
		return err
	}
	return s.outbox.Write(ctx, tx, ev)
}

// Get returns the delivery of an order.
func (s *Service) Get(ctx context.Context, orderID string) (Delivery, error) {
	if _, err := input.ParseID(orderID); err != nil {
		return Delivery{}, errs.Errorf(errs.NotFound, "no delivery for order %q", orderID)
	}
	var (
		d  Delivery
		id int64
	)
	err := s.pool.QueryRow(ctx, `SELECT id, order_id, store_id, status, started, updated_at FROM deliveries WHERE order_id = $1`, orderID).
		Scan(&id, &d.OrderID, &d.StoreID, &d.Status, &d.Started, &d.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, errs.Errorf(errs.NotFound, "no delivery for order %s", orderID)
	}
	d.ID = strconv.FormatInt(id, 10)
	return d, err
}

// Routes serves the delivery service's internal API:
//
//	GET /deliveries/{orderId}   the delivery of an order
func (s *Service) Routes(mux *http.ServeMux, logger *slog.Logger) {
	mux.HandleFunc("GET /deliveries/{orderId}", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) (Delivery, error) {
		return s.Get(r.Context(), r.PathValue("orderId"))
	}))
}
