package order

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// With its database away (connections cut, new ones refused), the order service answers every
// placement, a group commit's and an idempotent one's alike, and every read with the retryable
// UNAVAILABLE (503), which the BFF shows as UNAVAILABLE; not INTERNAL. Once the database is back,
// placing works again.
func TestPlacingWhileTheDatabaseIsAwayIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, _ := dbtest.NewDatabase(t, db.Order)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := outboxtest.NewProxy(t, u.Host)
	pool, err := pgxpool.New(ctx, proxy.URL(t, dbURL))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ob, err := outbox.New(pool, outbox.Config{Service: "order"})
	require.NoError(t, err)
	s := New(pool, ob, storeFunc(func(context.Context, string) (bool, error) { return true, nil }), Config{})
	mux := http.NewServeMux()
	s.Routes(mux, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client := httpapi.NewClient(srv.URL)
	place := func(i int, key string) (Order, error) {
		var o Order
		err := client.Do(ctx, http.MethodPost, "/orders",
			PlaceInput{CustomerID: fmt.Sprint("c-", i), Pizza: "불고기", Qty: 1, Region: "강남구", IdempotencyKey: key}, &o)
		return o, err
	}
	first, err := place(0, "")
	require.NoError(t, err)

	proxy.Stop()
	requireUnavailable := func(err error) {
		t.Helper()
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, errs.Unavailable, e.Code, "%v", err)
	}
	_, errs := placeAll(8, func(i int) (Order, error) { return place(i, "") })
	for _, err := range errs {
		requireUnavailable(err)
	}
	_, err = place(1, "key-1")
	requireUnavailable(err)
	requireUnavailable(client.Do(ctx, http.MethodGet, "/orders/"+first.ID, nil, nil))

	require.NoError(t, proxy.Start())
	// A connection the pool held through the outage may fail once more; then placing works.
	require.Eventually(t, func() bool { _, err := place(2, "key-2"); return err == nil }, 20*time.Second, 10*time.Millisecond)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n))
	require.Equal(t, 2, n, "nothing written during the outage")
}
