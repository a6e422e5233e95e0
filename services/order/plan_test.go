package order

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/lifecycle"
)

// A service starts on empty tables. Its batch statements must keep finding their rows through
// the index as the table grows: a prepared statement that settled on a generic plan while the
// table was empty would read the whole table on every batch (db.CustomPlan).
func TestBatchStatementsUseTheIndexAfterTheTableGrows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newGroupService(t)
	conn, err := pool.Acquire(ctx) // plans are per connection: one connection sees every run
	require.NoError(t, err)
	defer conn.Release()

	apply := func() (seqScans int64) {
		t.Helper()
		// Fresh orders each time, so the batch changes them: its lookup and its UPDATE ... FROM
		// unnest both run on every pass.
		var ids []int64
		require.NoError(t, conn.QueryRow(ctx, `
WITH o AS (INSERT INTO orders (customer_id, pizza, qty, region, status)
	SELECT 'c-' || n, '페퍼로니', 1, '강남구', 'ORDERED' FROM generate_series(1, 3) n RETURNING id)
SELECT array_agg(id ORDER BY id) FROM o`).Scan(&ids))
		var evs []outbox.Event
		for _, id := range ids {
			ev, err := outbox.NewEvent(lifecycle.StoreOrderReceived, strconv.FormatInt(id, 10), "store", lifecycle.Payload{StoreID: "1"})
			require.NoError(t, err)
			evs = append(evs, ev)
		}
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck // a rollback after Commit is a no-op
		// The backend's counts not yet sent to the shared statistics: a difference is this batch's.
		const q = `SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'orders'`
		var before int64
		require.NoError(t, tx.QueryRow(ctx, q).Scan(&before))
		require.NoError(t, s.HandleBatch(ctx, tx, evs))
		require.NoError(t, tx.QueryRow(ctx, q).Scan(&seqScans))
		seqScans -= before
		var received int // counted after the scans were read: this check may scan as it likes
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'RECEIVED'`, ids).Scan(&received))
		require.Equal(t, len(ids), received, "the batch updated its orders")
		require.NoError(t, tx.Commit(ctx))
		return seqScans
	}
	// More than five runs on a tiny table: where PostgreSQL settles on a generic plan.
	for range 8 {
		apply()
	}
	// The table grows, and nothing (no ANALYZE) tells a cached plan so.
	_, err = conn.Exec(ctx, `INSERT INTO orders (customer_id, pizza, qty, region, status)
SELECT 'c-' || n, '페퍼로니', 1, '강남구', 'RECEIVED' FROM generate_series(1, 20000) n`)
	require.NoError(t, err)
	require.Zero(t, apply(), "a batch read the whole orders table")
}
