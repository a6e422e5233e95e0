package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

// Issue 13, part 5: the availability check must not starve behind the store service's other
// work. Here every connection of the store's pool is held by a cook waiting on a row lock (the
// store busy with its own backlog, not slow at answering the check): placements are still
// ORDERED, and the breaker stays closed.
func TestAvailabilityCheckDoesNotWaitBehindTheStoresOtherWork(t *testing.T) {
	t.Parallel()
	const poolSize = 4
	sys := newSystem(t, map[string]string{"PIZZA_DB_MAX_CONNS": fmt.Sprint(poolSize)})
	sys.start(t, db.Services...)
	ctx := context.Background()
	_, err := sys.store.Register(ctx, store.RegisterInput{Name: "강남점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)
	var ids []string
	for range 2 * poolSize {
		o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "1", Pizza: "불고기피자", Qty: 1, Region: "강남구"})
		require.NoError(t, err)
		ids = append(ids, o.ID)
	}
	for _, id := range ids {
		sys.waitOrder(t, id, lifecycle.Received)
	}

	// Another session holds every store order's row: each cook takes a pool connection and waits.
	lock, err := sys.pools[db.Store].Begin(ctx)
	require.NoError(t, err)
	defer lock.Rollback(ctx) //nolint:errcheck
	_, err = lock.Exec(ctx, `SELECT FROM store_orders FOR UPDATE`)
	require.NoError(t, err)
	var cooks sync.WaitGroup
	for _, id := range ids {
		cooks.Go(func() { _, _ = sys.store.MarkCooked(context.Background(), id) })
	}
	var ourDB string
	require.NoError(t, sys.pools[db.Store].QueryRow(ctx, `SELECT current_database()`).Scan(&ourDB))
	require.Eventually(t, func() bool {
		var waiting int
		err := sys.pools[db.Store].QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = $1 AND wait_event_type = 'Lock'`, ourDB).Scan(&waiting)
		return err == nil && waiting >= poolSize
	}, 20*time.Second, 10*time.Millisecond, "every connection of the store's pool waits on the lock")

	// More placements than the breaker's trip threshold, one after another.
	for i := range 6 {
		o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "2", Pizza: "불고기피자", Qty: 1, Region: "강남구"})
		require.NoError(t, err)
		require.Equal(t, lifecycle.Ordered, o.Status, "placement %d: %s %s", i, o.Status, o.RejectReason)
	}
	require.Equal(t, "0", breakerState(t, sys), "the breaker stays closed")

	require.NoError(t, lock.Rollback(ctx))
	cooks.Wait()
}
