package delivery

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
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

	err = dbtest.Interleave(t, pool,
		func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, cooked) },    // inserts the row, not yet committed
		func(tx pgx.Tx) error { return outboxtest.Apply(ctx, tx, s.Consume, cancelled) }) // blocks on that row until then
	require.NoError(t, err)

	d, err := s.Get(ctx, "7")
	require.NoError(t, err)
	require.Equal(t, Cancelled, d.Status)
	var types []string
	rows, err := pool.Query(ctx, `SELECT type FROM outbox_events ORDER BY job_id, position`)
	require.NoError(t, err)
	for rows.Next() {
		var typ string
		require.NoError(t, rows.Scan(&typ))
		types = append(types, typ)
	}
	require.Equal(t, []string{lifecycle.DeliveryStartedEvent, lifecycle.DeliveryCancelled}, types)
}
