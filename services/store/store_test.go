package store

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// A cancellation that runs while the order's assignment is still uncommitted must not be lost:
// it waits for the assignment and cancels the received order, freeing the store.
func TestCancelRacingAssignmentIsNotLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := dbtest.NewDatabase(t, db.Store)
	ob, err := outbox.New(pool, outbox.Config{Service: "store"})
	require.NoError(t, err)
	s := New(pool, ob)
	st, err := s.Register(ctx, RegisterInput{Name: "강남점", Region: "강남구", Open: new(true)})
	require.NoError(t, err)
	placed, err := outbox.NewEvent(lifecycle.OrderPlaced, "7", "order", lifecycle.Payload{
		OrderDetails: lifecycle.OrderDetails{CustomerID: "1", Pizza: "p", Qty: 1, Region: "강남구"}})
	require.NoError(t, err)
	cancelled, err := outbox.NewEvent(lifecycle.OrderCancelled, "7", "order", nil)
	require.NoError(t, err)

	err = dbtest.Interleave(t, pool,
		func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, placed) },    // inserts the row, not yet committed
		func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, cancelled) }) // blocks on that row until then
	require.NoError(t, err)

	var status string
	var unfinished int
	require.NoError(t, pool.QueryRow(ctx, `SELECT status FROM store_orders WHERE order_id = '7'`).Scan(&status))
	require.NoError(t, pool.QueryRow(ctx, `SELECT unfinished FROM stores WHERE id = $1`, st.ID).Scan(&unfinished))
	require.Equal(t, "CANCELLED", status)
	require.Zero(t, unfinished)
	_, err = s.MarkCooked(ctx, "7")
	require.ErrorContains(t, err, "CONFLICT")
}

// Duplicate order.placed copies (fresh event ids, so the inbox cannot absorb them), cancellations
// and cooks of the same orders, all at once: no deadlock, no cancelled order revived, and every
// store's unfinished count equals its RECEIVED orders.
func TestConcurrentAssignCancelCookConverge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := dbtest.NewDatabase(t, db.Store)
	ob, err := outbox.New(pool, outbox.Config{Service: "store"})
	require.NoError(t, err)
	s := New(pool, ob)
	for _, name := range []string{"강남점", "역삼점"} {
		_, err := s.Register(ctx, RegisterInput{Name: name, Region: "강남구", Open: new(true)})
		require.NoError(t, err)
	}
	apply := func(ev outbox.Event) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, ev) })
	}
	const n = 150
	failures := make(chan error, 5*n)
	var wg sync.WaitGroup
	for i := range n {
		id := strconv.Itoa(i)
		details := lifecycle.Payload{OrderDetails: lifecycle.OrderDetails{CustomerID: "1", Pizza: "p", Qty: 1, Region: "강남구"}}
		for range 2 {
			wg.Go(func() {
				ev, err := outbox.NewEvent(lifecycle.OrderPlaced, id, "order", details)
				if err == nil {
					err = apply(ev)
				}
				failures <- err
			})
		}
		if i%2 == 0 {
			wg.Go(func() {
				ev, err := outbox.NewEvent(lifecycle.OrderCancelled, id, "order", nil)
				if err == nil {
					err = apply(ev)
				}
				failures <- err
			})
		}
		if i%3 == 0 {
			wg.Go(func() {
				_, err := s.MarkCooked(ctx, id)
				if errs.CodeOf(err) == errs.NotFound || errs.CodeOf(err) == errs.Conflict {
					err = nil // not assigned yet, or cancelled first
				}
				failures <- err
			})
		}
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		require.NoError(t, err)
	}
	var drift, revived int
	require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM stores s
WHERE s.unfinished <> (SELECT count(*) FROM store_orders o WHERE o.store_id = s.id AND o.status = 'RECEIVED')`).Scan(&drift))
	require.Zero(t, drift, "unfinished matches RECEIVED orders")
	require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM store_orders WHERE order_id::int % 2 = 0 AND status <> 'CANCELLED'`).Scan(&revived))
	require.Zero(t, revived, "every cancelled order stays cancelled")
}
