package store

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// newCancelWorld is a store service on a database of its own with one open store in 강남구, and
// a function applying an event as its consumer would.
func newCancelWorld(t *testing.T) (*Service, *pgxpool.Pool, func(outbox.Event)) {
	t.Helper()
	ctx := context.Background()
	_, pool := dbtest.NewDatabase(t, db.Store)
	ob, err := outbox.New(pool, outbox.Config{Service: "store"})
	require.NoError(t, err)
	s := New(pool, ob)
	_, err = s.Register(ctx, RegisterInput{Name: "강남점", Region: "강남구", Open: new(true)})
	require.NoError(t, err)
	apply := func(ev outbox.Event) {
		t.Helper()
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, ev) }))
	}
	return s, pool, apply
}

// events counts the store's events of one type for one order.
func events(t *testing.T, pool *pgxpool.Pool, orderID, typ string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = $2`, orderID, typ).Scan(&n))
	return n
}

// Cancel and MarkCooked of the same received orders, all at once: for each order exactly one
// takes effect and the other is a CONFLICT; the winner's event is the only one written, and every
// store's unfinished count equals its RECEIVED orders.
func TestCancelAndCookExactlyOneWins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, apply := newCancelWorld(t)
	const n = 50
	for i := range n {
		apply(placed(t, strconv.Itoa(i+1), "강남구"))
	}
	cancelErr, cookErr := make([]error, n), make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		id := strconv.Itoa(i + 1)
		wg.Go(func() { <-start; _, cancelErr[i] = s.Cancel(ctx, id) })
		wg.Go(func() { <-start; _, cookErr[i] = s.MarkCooked(ctx, id) })
	}
	close(start)
	wg.Wait()

	cancels := 0
	for i := range n {
		id := strconv.Itoa(i + 1)
		require.True(t, (cancelErr[i] == nil) != (cookErr[i] == nil), "order %s: cancel %v, cook %v", id, cancelErr[i], cookErr[i])
		o, err := s.Order(ctx, id)
		require.NoError(t, err)
		if cancelErr[i] == nil {
			cancels++
			require.Equal(t, errs.Conflict, errs.CodeOf(cookErr[i]), "%v", cookErr[i])
			require.Equal(t, lifecycle.Cancelled, o.Status)
			require.Equal(t, 1, events(t, pool, id, lifecycle.StoreOrderCancelled))
			require.Zero(t, events(t, pool, id, lifecycle.StoreOrderCooked))
		} else {
			require.Equal(t, errs.Conflict, errs.CodeOf(cancelErr[i]), "%v", cancelErr[i])
			require.Equal(t, lifecycle.Cooked, o.Status)
			require.Equal(t, 1, events(t, pool, id, lifecycle.StoreOrderCooked))
			require.Zero(t, events(t, pool, id, lifecycle.StoreOrderCancelled))
		}
	}
	requireCountersMatch(t, pool)
	t.Logf("%d of %d cancels took effect", cancels, n)
}

// Every answer Cancel gives, and what it writes.
func TestCancelAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, apply := newCancelWorld(t)
	status := func(orderID string) (st string, storeID *int64) {
		t.Helper()
		require.NoError(t, pool.QueryRow(ctx, `SELECT status, store_id FROM store_orders WHERE order_id = $1`, orderID).Scan(&st, &storeID))
		return st, storeID
	}

	t.Run("received: cancelled once, then the same answer; no longer cookable", func(t *testing.T) {
		apply(placed(t, "1", "강남구"))
		c, err := s.Cancel(ctx, "1")
		require.NoError(t, err)
		require.Equal(t, Cancellation{OrderID: "1", StoreID: "1", Status: lifecycle.Cancelled}, c)
		again, err := s.Cancel(ctx, "1")
		require.NoError(t, err)
		require.Equal(t, c, again)
		require.Equal(t, 1, events(t, pool, "1", lifecycle.StoreOrderCancelled), "announced once")
		_, err = s.MarkCooked(ctx, "1")
		require.Equal(t, errs.Conflict, errs.CodeOf(err))
		require.ErrorContains(t, err, "cancelled")
		requireCountersMatch(t, pool)
	})

	t.Run("cooked: a CONFLICT, nothing written", func(t *testing.T) {
		apply(placed(t, "2", "강남구"))
		_, err := s.MarkCooked(ctx, "2")
		require.NoError(t, err)
		_, err = s.Cancel(ctx, "2")
		require.Equal(t, errs.Conflict, errs.CodeOf(err))
		require.ErrorContains(t, err, "COOKED")
		st, _ := status("2")
		require.Equal(t, "COOKED", st)
		require.Zero(t, events(t, pool, "2", lifecycle.StoreOrderCancelled))
	})

	t.Run("not here yet: a stand-in, and the order is never assigned", func(t *testing.T) {
		c, err := s.Cancel(ctx, "3")
		require.NoError(t, err)
		require.Equal(t, Cancellation{OrderID: "3", Status: lifecycle.Cancelled}, c)
		require.Equal(t, 1, events(t, pool, "3", lifecycle.StoreOrderCancelled))
		apply(placed(t, "3", "강남구")) // order.placed arrives after the cancellation
		st, storeID := status("3")
		require.Equal(t, "CANCELLED", st)
		require.Nil(t, storeID, "no store received it")
		require.Zero(t, events(t, pool, "3", lifecycle.StoreOrderReceived))
		_, err = s.MarkCooked(ctx, "3")
		require.Equal(t, errs.NotFound, errs.CodeOf(err), "no store holds it")
		_, err = s.Cancel(ctx, "3")
		require.NoError(t, err, "cancelling again is the same answer")
		require.Equal(t, 1, events(t, pool, "3", lifecycle.StoreOrderCancelled))
		requireCountersMatch(t, pool)
	})

	t.Run("rejected (no open store): a CONFLICT", func(t *testing.T) {
		apply(placed(t, "4", "제주시"))
		_, err := s.Cancel(ctx, "4")
		require.Equal(t, errs.Conflict, errs.CodeOf(err))
		require.ErrorContains(t, err, "rejected")
		st, _ := status("4")
		require.Equal(t, "REJECTED", st)
		require.Zero(t, events(t, pool, "4", lifecycle.StoreOrderCancelled))
	})

	t.Run("not an order id: NOT_FOUND, nothing written", func(t *testing.T) {
		for _, id := range []string{"x", "0", "-1", "01"} {
			_, err := s.Cancel(ctx, id)
			require.Equal(t, errs.NotFound, errs.CodeOf(err), "id %q", id)
		}
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM store_orders WHERE order_id !~ '^[1-9][0-9]*$'`).Scan(&n))
		require.Zero(t, n)
	})
}

// A cancel that runs while the order's assignment is still uncommitted waits for it and cancels
// the received order, freeing its store: the stand-in is not written over it, nor lost.
func TestCancelRacingAssignmentCancelsTheReceivedOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := newCancelWorld(t)
	var c Cancellation
	err := dbtest.Interleave(t, pool,
		func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, placed(t, "7", "강남구")) }, // inserts the row, not yet committed
		func(pgx.Tx) error { // blocks on that row until then
			var err error
			c, err = s.Cancel(ctx, "7")
			return err
		})
	require.NoError(t, err)
	require.Equal(t, Cancellation{OrderID: "7", StoreID: "1", Status: lifecycle.Cancelled}, c)
	o, err := s.Order(ctx, "7")
	require.NoError(t, err)
	require.Equal(t, lifecycle.Cancelled, o.Status)
	require.Equal(t, 1, events(t, pool, "7", lifecycle.StoreOrderReceived))
	require.Equal(t, 1, events(t, pool, "7", lifecycle.StoreOrderCancelled))
	requireCountersMatch(t, pool)
}
