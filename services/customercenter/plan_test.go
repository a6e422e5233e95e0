package customercenter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/lifecycle"
)

// myPage starts empty. A consumer transaction's statements, sent in batches (the lock with the
// placeholder insert, the write-back with the COMMIT), must keep finding their rows through the
// index as the table grows, not settle on a generic plan made while it was empty.
func TestBatchStatementsUseTheIndexAfterTheTableGrows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, _ := dbtest.NewDatabase(t, db.CustomerCenter)
	// Plans are per connection: a pool of one sees every run on the same connection.
	pool, err := pgxpool.New(ctx, url+"&pool_max_conns=1")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ob, err := outbox.New(pool, outbox.Config{Service: Producer})
	require.NoError(t, err)
	s := New(pool, ob)

	seqScans := func() (n int64) {
		t.Helper()
		_, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`) // this connection's counts too
		require.NoError(t, err)
		require.NoError(t, pool.QueryRow(ctx, `SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'mypage'`).Scan(&n))
		return n
	}
	pass := 0
	apply := func() (scans int64) {
		t.Helper()
		pass++
		var evs []outbox.Event
		var ids []string
		for i := range 3 {
			id := fmt.Sprintf("%d-%d", pass, i)
			ids = append(ids, id)
			placed, err := outbox.NewEvent(lifecycle.OrderPlaced, id, "order", lifecycle.Payload{OrderDetails: lifecycle.OrderDetails{
				CustomerID: "c-" + id, Pizza: "페퍼로니", Qty: 1, Region: "강남구", PlacedAt: time.Now()}})
			require.NoError(t, err)
			received, err := outbox.NewEvent(lifecycle.StoreOrderReceived, id, "store", lifecycle.Payload{StoreID: "1"})
			require.NoError(t, err)
			evs = append(evs, placed, received)
		}
		before := seqScans()
		b := &pgx.Batch{}
		b.BeginTx(pgx.TxOptions{})
		tctx, tx, br := outbox.Begin(ctx, pool, b)
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		require.NoError(t, br.Close())
		require.NoError(t, s.HandleBatch(tctx, tx, evs))
		require.NoError(t, tx.Commit(tctx))
		scans = seqScans() - before
		var received int // counted after the scans were read: this check may scan as it likes
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM mypage WHERE order_id = ANY($1) AND status = 'RECEIVED' AND version = 2`,
			ids).Scan(&received))
		require.Equal(t, len(ids), received, "the batch created and updated its rows")
		return scans
	}
	// More than five runs on a tiny table: where PostgreSQL settles on a generic plan.
	for range 8 {
		apply()
	}
	// The table grows, and nothing (no ANALYZE) tells a cached plan so.
	_, err = pool.Exec(ctx, `INSERT INTO mypage (order_id) SELECT 'big-' || n FROM generate_series(1, 20000) n`)
	require.NoError(t, err)
	require.Zero(t, apply(), "a batch read the whole mypage table")
}
