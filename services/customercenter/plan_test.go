package customercenter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// myPage starts empty. A consumer transaction's statements, sent in batches (the lock with the
// placeholder insert, the write-back with the COMMIT), must keep finding their rows through the
// index as the table grows, not settle on a generic plan made while it was empty.
func TestBatchStatementsUseTheIndexAfterTheTableGrows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewOneConnPool(t, db.CustomerCenter) // plans are per connection: one sees every run
	ob, err := outbox.New(pool, outbox.Config{Service: Producer})
	require.NoError(t, err)
	s := New(pool, ob)

	n := 0
	pass := func() (check func()) {
		n++
		var evs []outbox.Event
		var ids []string
		for i := range 3 {
			id := fmt.Sprint(n*10 + i + 1) // order ids are positive integers
			ids = append(ids, id)
			placed, err := outbox.NewEvent(lifecycle.OrderPlaced, id, "order", lifecycle.Payload{OrderDetails: lifecycle.OrderDetails{
				CustomerID: "c-" + id, Pizza: "페퍼로니", Qty: 1, Region: "강남구", PlacedAt: time.Now()}})
			require.NoError(t, err)
			received, err := outbox.NewEvent(lifecycle.StoreOrderReceived, id, "store", lifecycle.Payload{StoreID: "1"})
			require.NoError(t, err)
			evs = append(evs, placed, received)
		}
		require.NoError(t, outbox.InTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			return outboxtest.Apply(ctx, tx, s.Consume, evs...) // in an outbox.Tx, as consumers apply it
		}))
		return func() {
			var received int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM mypage WHERE order_id = ANY($1) AND status = 'RECEIVED' AND version = 2`,
				ids).Scan(&received))
			require.Equal(t, len(ids), received, "the batch created and updated its rows")
		}
	}
	dbtest.RequireIndexAfterGrowth(t, pool, "mypage", `INSERT INTO mypage (order_id) SELECT 'big-' || n FROM generate_series(1, 20000) n`, pass)
}
