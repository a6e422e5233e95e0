package order

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// A service starts on empty tables. Its batch statements must keep finding their rows through
// the index as the table grows: a prepared statement that settled on a generic plan while the
// table was empty would read the whole table on every batch (db.CustomPlan).
func TestBatchStatementsUseTheIndexAfterTheTableGrows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewOneConnPool(t, db.Order) // plans are per connection: one sees every run
	ob, err := outbox.New(pool, outbox.Config{Service: "order"})
	require.NoError(t, err)
	s := New(pool, ob, storeFunc(func(context.Context, string) (bool, error) { return true, nil }), Config{})

	pass := func() (check func()) {
		// Fresh orders each time, so the batch changes them: its lookup and its UPDATE ... FROM
		// unnest (sent with the COMMIT, as in a consumer transaction) both run on every pass.
		var ids []int64
		require.NoError(t, pool.QueryRow(ctx, `
WITH o AS (INSERT INTO orders (customer_id, pizza, qty, region, status)
	SELECT 'c-' || n, '페퍼로니', 1, '강남구', 'ORDERED' FROM generate_series(1, 3) n RETURNING id)
SELECT array_agg(id ORDER BY id) FROM o`).Scan(&ids))
		var evs []outbox.Event
		for _, id := range ids {
			ev, err := outbox.NewEvent(lifecycle.StoreOrderReceived, strconv.FormatInt(id, 10), "store", lifecycle.Payload{StoreID: "1"})
			require.NoError(t, err)
			evs = append(evs, ev)
		}
		require.NoError(t, outbox.InTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			return outboxtest.Apply(ctx, tx, s.Consume, evs...) // in an outbox.Tx, as consumers apply it
		}))
		return func() {
			var received int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'RECEIVED'`, ids).Scan(&received))
			require.Equal(t, len(ids), received, "the batch updated its orders")
		}
	}
	dbtest.RequireIndexAfterGrowth(t, pool, "orders", `INSERT INTO orders (customer_id, pizza, qty, region, status)
SELECT 'c-' || n, '페퍼로니', 1, '강남구', 'RECEIVED' FROM generate_series(1, 20000) n`, pass)
}
