package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/lifecycle"
)

// A cancellation whose transaction runs while a cooked event's insert is still uncommitted must
// not be lost: it waits for that row and cancels the delivery it started.
func TestCancelRacingCookedIsNotLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := dbtest.NewDatabase(t, db.Delivery)
	ob, err := outbox.New(pool, outbox.Config{Service: "delivery"})
	require.NoError(t, err)
	s := New(pool, ob)
	cooked, err := outbox.NewEvent(lifecycle.StoreOrderCooked, "7", "store", lifecycle.Payload{StoreID: "1"})
	require.NoError(t, err)
	cancelled, err := outbox.NewEvent(lifecycle.OrderCancelled, "7", "order", nil)
	require.NoError(t, err)

	tx1, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Handle(ctx, tx1, cooked)) // inserted STARTED, not yet committed

	done := make(chan error, 1)
	go func() {
		tx2, err := pool.Begin(ctx)
		if err == nil {
			if err = s.Handle(ctx, tx2, cancelled); err == nil {
				err = tx2.Commit(ctx)
			}
		}
		done <- err
	}()
	// The cancellation blocks on the uncommitted row until tx1 commits.
	require.Eventually(t, func() bool {
		var waiting bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database())`).Scan(&waiting))
		return waiting
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, tx1.Commit(ctx))
	require.NoError(t, <-done)

	d, err := s.Get(ctx, "7")
	require.NoError(t, err)
	require.Equal(t, Cancelled, d.Status)
	var types []string
	rows, err := pool.Query(ctx, `SELECT args->>'type' FROM river_job ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var typ string
		require.NoError(t, rows.Scan(&typ))
		types = append(types, typ)
	}
	require.Equal(t, []string{lifecycle.DeliveryStartedEvent, lifecycle.DeliveryCancelled}, types)
}
