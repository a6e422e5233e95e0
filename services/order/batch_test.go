package order

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// storeFunc is a Store whose availability check is a function: the calls to the store are our
// own interface, and these tests are about what Place writes, not about the store service.
type storeFunc func(ctx context.Context, region string) (bool, error)

func (f storeFunc) AnyOpen(ctx context.Context, region string) (bool, error) { return f(ctx, region) }

func (f storeFunc) CancelOrder(context.Context, string) error {
	return errors.New("these tests do not cancel")
}

// newGroupService is an order service on a database of its own, with a write-only outbox (the
// events stay in river_job, where outbox_events shows them) and every region open.
func newGroupService(t *testing.T) (*Service, *pgxpool.Pool) {
	t.Helper()
	_, pool := dbtest.NewDatabase(t, db.Order)
	ob, err := outbox.New(pool, outbox.Config{Service: "order"})
	require.NoError(t, err)
	open := storeFunc(func(context.Context, string) (bool, error) { return true, nil })
	return New(pool, ob, open, Config{}), pool
}

// placeAll runs place(i) for i in [0, n) in n goroutines released at once, and returns the
// orders and errors by i.
func placeAll(n int, place func(i int) (Order, error)) ([]Order, []error) {
	orders, errs := make([]Order, n), make([]error, n)
	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	ready.Add(n)
	for i := range n {
		wg.Go(func() {
			ready.Done()
			<-start
			orders[i], errs[i] = place(i)
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()
	return orders, errs
}

// 50 concurrent placements with one customer and one idempotency key are one order: every call
// returns its id, and one row and one order.placed event exist.
func TestConcurrentPlaceWithOneIdempotencyKeyIsOneOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newGroupService(t)
	in := PlaceInput{CustomerID: "c-1", Pizza: "페퍼로니", Qty: 2, Region: "강남구", IdempotencyKey: "key-1"}

	const n = 50
	orders, errs := placeAll(n, func(int) (Order, error) { return s.Place(ctx, in) })
	for i := range n {
		require.NoError(t, errs[i], "placement %d", i)
	}
	id := orders[0].ID
	require.NotEmpty(t, id)
	for i, o := range orders {
		require.Equal(t, id, o.ID, "placement %d got another order", i)
		require.Equal(t, lifecycle.Ordered, o.Status)
		require.Equal(t, in.Pizza, o.Pizza)
	}
	var rows, keyed int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE customer_id = $1 AND idempotency_key = $2) FROM orders`,
		in.CustomerID, in.IdempotencyKey).Scan(&rows, &keyed))
	require.Equal(t, 1, rows, "one order row in all")
	require.Equal(t, 1, keyed)

	type event struct{ Type, OrderID string }
	evRows, err := pool.Query(ctx, `SELECT type, order_id FROM outbox_events ORDER BY job_id, position`)
	require.NoError(t, err)
	var events []event
	for evRows.Next() {
		var e event
		require.NoError(t, evRows.Scan(&e.Type, &e.OrderID))
		events = append(events, e)
	}
	require.NoError(t, evRows.Err())
	require.Equal(t, []event{{lifecycle.OrderPlaced, id}}, events, "one order.placed for the one order")
}

// 300 concurrent placements of distinct orders: distinct ids, each order announced by exactly one
// event, and the events written in fewer relay jobs than orders (the group commit groups them).
func TestConcurrentDistinctPlacementsAreEachWrittenOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newGroupService(t)

	const n = 300
	orders, errs := placeAll(n, func(i int) (Order, error) {
		in := PlaceInput{CustomerID: fmt.Sprintf("c-%d", i%17), Pizza: "불고기", Qty: 1 + i%5, Region: "강남구"}
		if i%2 == 0 { // half with a key of their own, half with none
			in.IdempotencyKey = fmt.Sprintf("key-%d", i)
		}
		return s.Place(ctx, in)
	})
	ids := make(map[string]int, n)
	for i := range n {
		require.NoError(t, errs[i], "placement %d", i)
		require.Equal(t, fmt.Sprintf("c-%d", i%17), orders[i].CustomerID, "placement %d got someone else's order", i)
		require.Equal(t, 1+i%5, orders[i].Qty, "placement %d got another order", i)
		prev, dup := ids[orders[i].ID]
		require.False(t, dup, "placements %d and %d got the same order id %s", prev, i, orders[i].ID)
		ids[orders[i].ID] = i
	}
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&rows))
	require.Equal(t, n, rows)

	// Every order has exactly one event, an order.placed naming it, and no event names no order.
	var orphanOrders, strayEvents, events, distinctOrders, jobs int
	require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM orders o
WHERE (SELECT count(*) FROM outbox_events e WHERE e.order_id = o.id::text AND e.type = $1) <> 1`,
		lifecycle.OrderPlaced).Scan(&orphanOrders))
	require.Zero(t, orphanOrders, "orders without exactly one order.placed")
	require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM outbox_events e WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id::text = e.order_id)`).Scan(&strayEvents))
	require.Zero(t, strayEvents, "events for orders that do not exist")
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(*), count(DISTINCT order_id), count(DISTINCT job_id) FROM outbox_events`).Scan(&events, &distinctOrders, &jobs))
	require.Equal(t, n, events)
	require.Equal(t, n, distinctOrders)
	require.Less(t, jobs, n, "concurrent placements should share group commits (one relay job per transaction)")
	t.Logf("%d orders in %d group commits", n, jobs)

	// The events carry what was recorded: each one's payload matches its order's row.
	var mismatched int
	require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM outbox_events e JOIN orders o ON o.id::text = e.order_id
WHERE e.event->'payload'->>'customerId' IS DISTINCT FROM o.customer_id
   OR (e.event->'payload'->>'qty')::int IS DISTINCT FROM o.qty`).Scan(&mismatched))
	require.Zero(t, mismatched, "events whose payload is another order's")

	// The group commit is still alive afterwards: a lost lead would make this wait forever.
	o, err := s.Place(ctx, PlaceInput{CustomerID: "c-after", Pizza: "불고기", Qty: 1, Region: "강남구"})
	require.NoError(t, err)
	require.NotContains(t, ids, o.ID)
}

// Once every Place has returned, the group commit holds nothing: no placement queued and no
// leader slot taken. A slot not given back belongs to a leader that will never run again, and
// leaves fewer than maxCommitters groups committing at a time for the rest of the process.
// Leaders hand over while others arrive in many short rounds of a few concurrent placements.
func TestGroupCommitGivesBackEveryLeaderSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newGroupService(t)
	const perRound = 8
	placed := 0
	for range 150 {
		_, errs := placeAll(perRound, func(i int) (Order, error) {
			return s.Place(ctx, PlaceInput{CustomerID: fmt.Sprintf("c-%d", i), Pizza: "불고기", Qty: 1, Region: "강남구"})
		})
		for _, err := range errs {
			require.NoError(t, err)
		}
		placed += perRound
		s.groups.mu.Lock()
		queued, leaders := len(s.groups.queue), s.groups.leaders
		s.groups.mu.Unlock()
		require.Zero(t, queued, "placements left in the group-commit queue after %d orders", placed)
		require.Zero(t, leaders, "a leader slot is still taken with nobody placing, after %d orders: the lead was lost", placed)
	}
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&rows))
	require.Equal(t, placed, rows)
	t.Logf("%d orders in %d rounds", placed, placed/perRound)
}
