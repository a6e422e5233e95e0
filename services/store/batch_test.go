package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// The store service consuming through the real outbox consumer: batches of events in one
// transaction, several transactions at once.

// gateKey is an event the store ignores; the tests' handler blocks on it to let a backlog gather.
const gateKey = "test.gate"

// consumerWorld is a store service on its own database (with a write-only outbox: the events it
// emits stay in river_job), its own queue, and a publisher that declared that queue.
type consumerWorld struct {
	s        *Service
	pool     *pgxpool.Pool
	names    outboxtest.Names
	queue    outbox.QueueSpec
	pub      *outbox.Publisher
	failures *failureLog
}

func newConsumerWorld(t *testing.T) *consumerWorld {
	t.Helper()
	_, pool := dbtest.NewDatabase(t, db.Store)
	ob, err := outbox.New(pool, outbox.Config{Service: "store"})
	require.NoError(t, err)
	names := outboxtest.NewNames(t)
	queue := outbox.QueueSpec{Name: names.Queue("store.events"), Keys: append(slices.Clone(Keys), gateKey)}
	pub := outbox.NewPublisher(outbox.PublisherConfig{
		URL: outboxtest.URL(), Exchange: names.Exchange, Name: t.Name(), Topology: []outbox.QueueSpec{queue},
	})
	t.Cleanup(pub.Close)
	return &consumerWorld{s: New(pool, ob), pool: pool, names: names, queue: queue, pub: pub, failures: &failureLog{}}
}

// consume runs a consumer of the world's queue with h until the test ends.
func (w *consumerWorld) consume(t *testing.T, h outbox.Handler, mod func(*outbox.ConsumerConfig)) {
	t.Helper()
	w.consumeWith(t, func(cfg outbox.ConsumerConfig) *outbox.Consumer {
		return outbox.NewConsumer(w.pool, cfg, outbox.EachEvent(h))
	}, mod)
}

// consumeWith runs the consumer mk builds until the test ends.
func (w *consumerWorld) consumeWith(t *testing.T, mk func(outbox.ConsumerConfig) *outbox.Consumer, mod func(*outbox.ConsumerConfig)) {
	t.Helper()
	cfg := outbox.ConsumerConfig{
		URL: outboxtest.URL(), Exchange: w.names.Exchange, Queue: w.queue,
		Metrics: outbox.NewMetrics(prometheus.NewRegistry()),
		Logger:  slog.New(w.failures),
	}
	mod(&cfg)
	c := mk(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, c.Connected, 10*time.Second, 5*time.Millisecond, "consumer never connected")
}

func (w *consumerWorld) publish(t *testing.T, evs ...outbox.Event) {
	t.Helper()
	for _, ev := range evs {
		body, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, w.pub.Publish(context.Background(), ev.Type, ev.ID.String(), body, nil))
	}
}

// waitInbox waits until the consumers have applied n events.
func (w *consumerWorld) waitInbox(t *testing.T, n int, within time.Duration) {
	t.Helper()
	var have int
	require.Eventually(t, func() bool {
		require.NoError(t, w.pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_inbox`).Scan(&have))
		return have >= n
	}, within, 5*time.Millisecond, "want %d events applied; have %d; consumer failures: %v", n, have, w.failures.all())
}

func (w *consumerWorld) register(t *testing.T, region string, n int, open bool) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		st, err := w.s.Register(context.Background(), RegisterInput{Name: fmt.Sprintf("%s %d호점", region, i+1), Region: region, Open: &open})
		require.NoError(t, err)
		id, err := strconv.ParseInt(st.ID, 10, 64)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	return ids
}

// failureLog is the consumers' logger: it keeps every record that carries an error (a batch
// that failed and fell back to one by one, a retried or dead-lettered delivery).
type failureLog struct {
	mu   sync.Mutex
	errs []string
}

func (f *failureLog) Enabled(context.Context, slog.Level) bool { return true }
func (f *failureLog) WithAttrs([]slog.Attr) slog.Handler       { return f }
func (f *failureLog) WithGroup(string) slog.Handler            { return f }
func (f *failureLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			f.mu.Lock()
			f.errs = append(f.errs, r.Message+": "+a.Value.String())
			f.mu.Unlock()
		}
		return true
	})
	return nil
}

func (f *failureLog) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs)
}

func placed(t *testing.T, orderID, region string) outbox.Event {
	t.Helper()
	ev, err := outbox.NewEvent(lifecycle.OrderPlaced, orderID, "order", lifecycle.Payload{
		OrderDetails: lifecycle.OrderDetails{CustomerID: "c-" + orderID, Pizza: "p", Qty: 1, Region: region}})
	require.NoError(t, err)
	return ev
}

func cancelled(t *testing.T, orderID string) outbox.Event {
	t.Helper()
	ev, err := outbox.NewEvent(lifecycle.OrderCancelled, orderID, "order", nil)
	require.NoError(t, err)
	return ev
}

// requireCountersMatch checks every store's unfinished count against its RECEIVED orders.
func requireCountersMatch(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
SELECT s.id, s.unfinished, (SELECT count(*) FROM store_orders o WHERE o.store_id = s.id AND o.status = 'RECEIVED')
FROM stores s ORDER BY s.id`)
	require.NoError(t, err)
	type counter struct{ ID, Unfinished, Received int64 }
	counters, err := pgx.CollectRows(rows, pgx.RowToStructByPos[counter])
	require.NoError(t, err)
	require.NotEmpty(t, counters)
	for _, c := range counters {
		require.Equal(t, c.Received, c.Unfinished, "store %d: unfinished should equal its RECEIVED orders", c.ID)
	}
}

// Several regions of several stores, 600 orders placed and some of them cancelled (a few before
// they were placed), applied by two consumers of four workers each (one event by event, one
// prepared), in batches: nothing fails
// (no deadlock, no retry, nothing dead-lettered), every event is applied, and every store's
// unfinished count equals its RECEIVED orders.
func TestConcurrentBatchesKeepCountersWithoutDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newConsumerWorld(t)
	regions := []string{"강남구", "서초구", "송파구", "마포구"}
	for _, r := range regions {
		w.register(t, r, 4, true)
		w.register(t, r, 1, false) // a closed store is never chosen
	}

	const orders = 600
	var (
		evs          []outbox.Event
		wantCanceled = map[string]bool{}
	)
	for i := range orders {
		id := fmt.Sprintf("%04d", i)
		if i%29 == 0 { // the cancellation arrives before the order
			evs = append(evs, cancelled(t, id))
			wantCanceled[id] = true
		}
		evs = append(evs, placed(t, id, regions[i%len(regions)]))
		if i%5 == 0 && i >= 20 { // a cancellation of an order placed a little earlier
			prev := fmt.Sprintf("%04d", i-20)
			evs = append(evs, cancelled(t, prev))
			wantCanceled[prev] = true
		}
	}
	w.publish(t, evs...) // before any consumer: a backlog, so batches form
	// One consumer applies event by event, the other as serve runs it: its locks and reads sent
	// with each transaction's BEGIN.
	mod := func(c *outbox.ConsumerConfig) { c.Prefetch, c.Concurrency, c.BatchSize = 1024, 4, 32 }
	w.consume(t, func(ctx context.Context, tx pgx.Tx, ev outbox.Event) error {
		return outboxtest.Apply(ctx, tx, w.s.Consume, ev)
	}, mod)
	w.consumeWith(t, func(cfg outbox.ConsumerConfig) *outbox.Consumer {
		return outbox.NewConsumer(w.pool, cfg, w.s.Consume)
	}, mod)
	w.waitInbox(t, len(evs), 30*time.Second)
	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, w.queue.Name) == 0 }, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, outboxtest.QueueDepth(t, w.queue.DLQ()), "nothing dead-lettered")
	require.Empty(t, w.failures.all(), "no batch or handler failed (a deadlock would show here)")

	requireCountersMatch(t, w.pool)
	rows, err := w.pool.Query(ctx, `SELECT order_id, status, store_id IS NOT NULL FROM store_orders ORDER BY order_id`)
	require.NoError(t, err)
	type row struct {
		OrderID, Status string
		Assigned        bool
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	require.NoError(t, err)
	require.Len(t, got, orders)
	received := 0
	for _, r := range got {
		if wantCanceled[r.OrderID] {
			require.Equal(t, string(lifecycle.Cancelled), r.Status, "order %s was cancelled", r.OrderID)
			continue
		}
		require.Equal(t, string(lifecycle.Received), r.Status, "order %s", r.OrderID)
		require.True(t, r.Assigned)
		received++
	}
	var onClosed int
	require.NoError(t, w.pool.QueryRow(ctx, `
SELECT count(*) FROM store_orders o JOIN stores s ON s.id = o.store_id WHERE NOT s.open`).Scan(&onClosed))
	require.Zero(t, onClosed, "orders assigned to a closed store")

	// What the store announced, written at the end of each batch: one store.order.received per
	// assigned order.
	var announced, distinct int
	require.NoError(t, w.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT order_id) FROM outbox_events WHERE type = $1`,
		lifecycle.StoreOrderReceived).Scan(&announced, &distinct))
	var assigned int
	require.NoError(t, w.pool.QueryRow(ctx, `SELECT count(*) FROM store_orders WHERE store_id IS NOT NULL`).Scan(&assigned))
	require.Equal(t, assigned, announced)
	require.Equal(t, assigned, distinct)
	require.GreaterOrEqual(t, assigned, received)
}

// Ten orders for a region with two open, idle stores, applied in one batch: the choice counts the
// batch's own assignments, so each store gets five (not all ten to the first).
func TestOneBatchSpreadsARegionsOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newConsumerWorld(t)
	stores := w.register(t, "강남구", 2, true)
	w.register(t, "서초구", 1, true)

	gateOpen := make(chan struct{})
	entered := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	perTx := map[int64]int{} // placed orders applied by each transaction
	handler := func(ctx context.Context, tx pgx.Tx, ev outbox.Event) error {
		if ev.Type == gateKey {
			once.Do(func() { close(entered) })
			select {
			case <-gateOpen:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var xid int64
		if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid); err != nil {
			return err
		}
		mu.Lock()
		perTx[xid]++
		mu.Unlock()
		return outboxtest.Apply(ctx, tx, w.s.Consume, ev)
	}
	w.consume(t, handler, func(c *outbox.ConsumerConfig) { c.Prefetch, c.Concurrency, c.BatchSize = 64, 1, 64 })

	// The one worker blocks on the gate event while the ten orders reach the consumer, then
	// finds them all waiting.
	gate, err := outbox.NewEvent(gateKey, "gate", "test", nil)
	require.NoError(t, err)
	w.publish(t, gate)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never reached the gate event")
	}
	const n = 10
	for i := range n {
		w.publish(t, placed(t, fmt.Sprintf("%02d", i), "강남구"))
	}
	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, w.queue.Name) == 0 }, 10*time.Second, time.Millisecond,
		"the broker should push the orders to the gated consumer")
	close(gateOpen)
	w.waitInbox(t, n+1, 10*time.Second)
	require.Empty(t, w.failures.all())

	mu.Lock()
	largest := 0
	for _, k := range perTx {
		largest = max(largest, k)
	}
	t.Logf("orders per transaction: %v", perTx)
	mu.Unlock()
	require.GreaterOrEqual(t, largest, 2, "the orders should have been applied in a batch")

	rows, err := w.pool.Query(ctx, `
SELECT s.id, s.unfinished, count(o.order_id) FROM stores s LEFT JOIN store_orders o ON o.store_id = s.id AND o.status = 'RECEIVED'
WHERE s.region = '강남구' GROUP BY s.id ORDER BY s.id`)
	require.NoError(t, err)
	type load struct{ ID, Unfinished, Received int64 }
	loads, err := pgx.CollectRows(rows, pgx.RowToStructByPos[load])
	require.NoError(t, err)
	require.Equal(t, []load{{stores[0], n / 2, n / 2}, {stores[1], n / 2, n / 2}}, loads,
		"a batch's orders spread evenly over the region's idle stores")
	requireCountersMatch(t, w.pool)
}
