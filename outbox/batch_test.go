package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// Tests of a consumer transaction's batch: its scope (deferred writes, Deferred), duplicates in
// one batch, relay jobs of many events, and BatchHandler.

const (
	gateKey    = "test.gate"    // an event whose handler blocks until the test opens the gate
	derivedKey = "derived.made" // what handlers write; no relay runs for it
)

// newEvents returns n fresh events of type key, each its own order.
func newEvents(t *testing.T, key string, n int) []Event {
	t.Helper()
	evs := make([]Event, n)
	for i := range evs {
		var err error
		evs[i], err = NewEvent(key, fmt.Sprintf("o-%03d", i), "test", map[string]int{"i": i})
		require.NoError(t, err)
	}
	return evs
}

// publish sends events straight to the test's exchange (no outbox rows), confirmed, in order.
func (b *bundle) publish(t *testing.T, p *Publisher, evs ...Event) {
	t.Helper()
	for _, ev := range evs {
		body, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, p.Publish(context.Background(), ev.Type, ev.ID.String(), body, nil))
	}
}

// run runs c until the test ends and waits for its subscription.
func (b *bundle) run(t *testing.T, c *Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, c.Connected, 10*time.Second, 5*time.Millisecond, "consumer never connected")
}

func (b *bundle) consumerConfig(mod func(*ConsumerConfig)) ConsumerConfig {
	cfg := ConsumerConfig{URL: outboxtest.URL(), Exchange: b.names.Exchange, Queue: b.queue, Metrics: b.metrics}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

// gate holds back a consumer so that a backlog gathers behind it: the handler of the gate event
// blocks until the test has published the rest and the broker has pushed it all to the consumer.
type gate struct {
	entered, release chan struct{}
	once             sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) wait(ctx context.Context) error {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backlogBehind publishes a gate event, waits until the consumer (already running, with Concurrency
// 1 and Prefetch above len(evs)) blocks on it, publishes evs, waits until the broker has handed
// every one to the consumer, and opens the gate: the consumer then finds them all waiting.
func (b *bundle) backlogBehind(t *testing.T, p *Publisher, g *gate, evs ...Event) {
	t.Helper()
	gev, err := NewEvent(gateKey, "gate", "test", nil)
	require.NoError(t, err)
	b.publish(t, p, gev)
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never reached the gate event")
	}
	b.publish(t, p, evs...)
	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, b.queue.Name) == 0 }, 10*time.Second, time.Millisecond,
		"the broker should push the whole backlog to the gated consumer")
	close(g.release)
}

// tally is deferred work: it counts the events of one consumer transaction and, at its end,
// records one row with the count.
type tally struct{ events int }

type tallyKey struct{}

func (c *tally) Flush(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `INSERT INTO flushes (events) VALUES ($1)`, c.events)
	return err
}

// A consumer transaction's scope: a handler Writes one event per event it applies and counts them
// in a Deferred tally. Every written event is inserted, each transaction's in one relay job, and
// the tally is flushed exactly once per transaction with that transaction's count.
func TestConsumerTransactionWritesOnceAndFlushesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `
CREATE TABLE applied (event_id uuid NOT NULL, xid bigint NOT NULL DEFAULT txid_current());
CREATE TABLE flushes (xid bigint NOT NULL DEFAULT txid_current(), events int NOT NULL)`)
	require.NoError(t, err)
	writer, err := New(b.pool, Config{Service: "test"}) // write-only: what the handlers write stays put
	require.NoError(t, err)
	handler := func(ctx context.Context, tx pgx.Tx, ev Event) error {
		c, ok := Deferred(ctx, tx, tallyKey{}, func() *tally { return &tally{} })
		if !ok {
			return errors.New("a consumer's handler runs in a consumer transaction")
		}
		c.events++
		if _, err := tx.Exec(ctx, `INSERT INTO applied (event_id) VALUES ($1)`, ev.ID); err != nil {
			return err
		}
		derived, err := NewEvent(derivedKey, ev.ID.String(), "test", nil) // named after its cause
		if err != nil {
			return err
		}
		return writer.Write(ctx, tx, derived)
	}

	const n = 300
	b.declare(t)
	evs := newEvents(t, testKey, n)
	b.publish(t, b.publisher(t, outboxtest.URL()), evs...)
	b.run(t, NewConsumer(b.pool, b.consumerConfig(func(c *ConsumerConfig) {
		c.Prefetch, c.Concurrency, c.BatchSize = 512, 4, 64
	}), EachEvent(handler)))
	require.Eventually(t, func() bool {
		var applied int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&applied))
		return applied >= n
	}, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.consumed("applied") == n }, 10*time.Second, time.Millisecond)

	var applied, distinctApplied, txs int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id), count(DISTINCT xid) FROM applied`).
		Scan(&applied, &distinctApplied, &txs))
	require.Equal(t, n, applied, "each event applied once")
	require.Equal(t, n, distinctApplied)

	// Every written event is in the outbox, once, for its own cause.
	var written, distinctWritten, causes, jobs, relayJobs int
	require.NoError(t, b.pool.QueryRow(ctx, `
SELECT count(*), count(DISTINCT event_id), count(DISTINCT order_id), count(DISTINCT job_id)
FROM outbox_events WHERE type = $1`, derivedKey).Scan(&written, &distinctWritten, &causes, &jobs))
	require.Equal(t, n, written, "every written event inserted")
	require.Equal(t, n, distinctWritten)
	require.Equal(t, n, causes)
	var uncaused int
	require.NoError(t, b.pool.QueryRow(ctx, `
SELECT count(*) FROM applied a WHERE NOT EXISTS (SELECT 1 FROM outbox_events e WHERE e.order_id = a.event_id::text)`).Scan(&uncaused))
	require.Zero(t, uncaused, "applied events whose written event is missing")
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'outbox_relay'`).Scan(&relayJobs))
	require.Equal(t, jobs, relayJobs)
	require.Less(t, jobs, n, "batches should have formed: several events per relay job")

	// One relay job per transaction: a job's events come from one transaction, and a
	// transaction's events are in one job.
	var mixedJobs, splitTxs int
	require.NoError(t, b.pool.QueryRow(ctx, `
SELECT count(*) FROM (SELECT e.job_id FROM outbox_events e JOIN applied a ON a.event_id::text = e.order_id
	GROUP BY e.job_id HAVING count(DISTINCT a.xid) <> 1) x`).Scan(&mixedJobs))
	require.Zero(t, mixedJobs, "relay jobs holding events of several transactions")
	require.NoError(t, b.pool.QueryRow(ctx, `
SELECT count(*) FROM (SELECT a.xid FROM outbox_events e JOIN applied a ON a.event_id::text = e.order_id
	GROUP BY a.xid HAVING count(DISTINCT e.job_id) <> 1) x`).Scan(&splitTxs))
	require.Zero(t, splitTxs, "transactions whose written events were inserted as several jobs")
	require.Equal(t, txs, jobs)

	// The deferred tally ran once per transaction, with that transaction's count.
	var flushes, flushedTxs, sum, wrong int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xid), COALESCE(sum(events), 0) FROM flushes`).
		Scan(&flushes, &flushedTxs, &sum))
	require.Equal(t, txs, flushes, "one flush per transaction")
	require.Equal(t, flushes, flushedTxs, "no transaction flushed twice")
	require.Equal(t, n, sum)
	require.NoError(t, b.pool.QueryRow(ctx, `
SELECT count(*) FROM flushes f WHERE f.events <> (SELECT count(*) FROM applied a WHERE a.xid = f.xid)`).Scan(&wrong))
	require.Zero(t, wrong, "flushes whose count is not their transaction's")
	t.Logf("%d events in %d transactions", n, txs)
}

// The same event delivered twice in one batch is applied once. The batch is made directly from
// two deliveries of the same message (and one other) taken from the broker, so it is certainly
// one batch; the second half runs the consumer on a backlog holding both copies.
func TestSameEventTwiceInOneBatchIsAppliedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.declare(t)
	p := b.publisher(t, outboxtest.URL())

	t.Run("one batch", func(t *testing.T) {
		evs := newEvents(t, testKey, 2)
		twice, other := evs[0], evs[1]
		b.publish(t, p, twice, other, twice)
		conn, err := amqp.Dial(outboxtest.URL())
		require.NoError(t, err)
		defer conn.Close()
		ch, err := conn.Channel()
		require.NoError(t, err)
		var ds []amqp.Delivery
		for range 3 {
			d, ok, err := ch.Get(b.queue.Name, false)
			require.NoError(t, err)
			require.True(t, ok)
			ds = append(ds, d)
		}
		c := NewConsumer(b.pool, b.consumerConfig(nil), EachEvent(recordEffect))
		require.Empty(t, c.settleBatch(ctx, newAcker(ch, 64), ds, make(chan struct{})), "the batch settles every delivery")
		require.Equal(t, effectCount{rows: 2, distinct: 2}, b.effects(t))
		require.Equal(t, 1.0, b.consumed("duplicate"))
		require.Equal(t, 2.0, b.consumed("applied"))
		require.NoError(t, ch.Close()) // anything unacked would go back to the queue
		require.Zero(t, outboxtest.QueueDepth(t, b.queue.Name), "every copy acked")
	})

	t.Run("consumer", func(t *testing.T) {
		_, err := b.pool.Exec(ctx, `TRUNCATE effects`)
		require.NoError(t, err)
		duplicates := b.consumed("duplicate")
		g := newGate()
		handler := func(ctx context.Context, tx pgx.Tx, ev Event) error {
			if ev.Type == gateKey {
				return g.wait(ctx)
			}
			return recordEffect(ctx, tx, ev)
		}
		b.run(t, NewConsumer(b.pool, b.consumerConfig(func(c *ConsumerConfig) {
			c.Prefetch, c.Concurrency, c.BatchSize = 64, 1, 32
		}), EachEvent(handler)))
		others := newEvents(t, testKey, 10)
		twice := newEvents(t, testKey, 1)[0]
		backlog := append(append([]Event{twice}, others...), twice)
		b.backlogBehind(t, p, g, backlog...)

		require.Eventually(t, func() bool { return b.consumed("duplicate") == duplicates+1 }, 10*time.Second, time.Millisecond,
			"the second copy should be acked as a duplicate")
		require.Equal(t, effectCount{rows: 11, distinct: 11}, b.waitEffects(t, 11, 10*time.Second))
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM effects WHERE event_id = $1`, twice.ID).Scan(&n))
		require.Equal(t, 1, n, "the event delivered twice applied once")
		require.Zero(t, outboxtest.QueueDepth(t, b.queue.Name))
		require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()))
	})
}

// A relay job of many events publishes every one of them: 50 events written in one transaction
// are one job, 300 are two (a job holds at most maxEventsPerJob), and a consumer applies each of
// the 350 exactly once.
func TestMultiEventRelayJobIsPublishedCompletely(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.declare(t)
	writer, err := New(b.pool, Config{Service: "test"}) // write-only: nothing relays yet
	require.NoError(t, err)
	fifty := b.write(t, writer, testKey, 50)
	more := b.write(t, writer, testKey, 300)
	written := append(slices.Clone(fifty), more...)

	// How they were stored: one job per 256 events, in the order written.
	jobEvents := func(ids []uuid.UUID) map[int64][]string {
		rows, err := b.pool.Query(ctx, `SELECT job_id, event_id FROM outbox_events WHERE event_id = ANY($1) ORDER BY job_id, position`,
			uuidStrings(ids))
		require.NoError(t, err)
		defer rows.Close()
		out := map[int64][]string{}
		for rows.Next() {
			var job int64
			var id string
			require.NoError(t, rows.Scan(&job, &id))
			out[job] = append(out[job], id)
		}
		require.NoError(t, rows.Err())
		return out
	}
	jobs50 := jobEvents(fifty)
	require.Len(t, jobs50, 1, "50 events of one transaction are one relay job")
	for _, ids := range jobs50 {
		require.Equal(t, uuidStrings(fifty), ids, "in the order written")
	}
	var sizes []int
	var inJobs []string
	for _, ids := range jobEvents(more) {
		sizes = append(sizes, len(ids))
		inJobs = append(inJobs, ids...)
	}
	slices.Sort(sizes)
	require.Equal(t, []int{300 - maxEventsPerJob, maxEventsPerJob}, sizes, "300 events are two relay jobs")
	require.ElementsMatch(t, uuidStrings(more), inJobs)
	var relayJobs int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'outbox_relay'`).Scan(&relayJobs))
	require.Equal(t, 3, relayJobs)

	o := b.outbox(t, outboxtest.URL(), nil)
	b.consume(t, outboxtest.URL(), recordEffect, nil)
	got := b.waitEffects(t, len(written), 20*time.Second)
	b.waitBacklogEmpty(t, o, 20*time.Second)
	require.Equal(t, effectCount{rows: len(written), distinct: len(written)}, got, "each event applied once")

	rows, err := b.pool.Query(ctx, `SELECT event_id::text FROM effects`)
	require.NoError(t, err)
	applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.ElementsMatch(t, uuidStrings(written), applied, "the consumer saw exactly the written events")
	var unfinished int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE state <> 'completed'`).Scan(&unfinished))
	require.Zero(t, unfinished, "every event's job completed")
	require.Equal(t, float64(len(written)), testutil.ToFloat64(b.metrics.published.WithLabelValues("test", testKey)))
	require.Equal(t, float64(len(written)), b.consumed("applied"))
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// A BatchHandler gets a backlog's events several at a call. One poison event makes its batch
// fail: the consumer applies that batch's deliveries one by one, so every other event is applied
// once, and the poison one is dead-lettered after its retries.
func TestBatchHandlerFallsBackOneByOneAroundPoison(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.declare(t)
	p := b.publisher(t, outboxtest.URL())
	const poisonKey = "test.poison"
	const maxAttempts = 3

	g := newGate()
	var (
		mu    sync.Mutex
		calls [][]uuid.UUID // the events of each handler call, in call order
	)
	poisonErr := errors.New("this batch handler fails on poison")
	handler := func(ctx context.Context, tx pgx.Tx, events []Event) error {
		ids := make([]uuid.UUID, 0, len(events))
		poisoned := false
		for _, ev := range events {
			if ev.Type == gateKey {
				if err := g.wait(ctx); err != nil {
					return err
				}
				continue
			}
			ids = append(ids, ev.ID)
			poisoned = poisoned || ev.Type == poisonKey
		}
		mu.Lock()
		calls = append(calls, ids)
		mu.Unlock()
		if poisoned {
			return poisonErr
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id) SELECT unnest($1::uuid[])`, ids)
		return err
	}
	b.run(t, NewConsumer(b.pool, b.consumerConfig(func(c *ConsumerConfig) {
		c.Prefetch, c.Concurrency, c.BatchSize = 256, 1, 64
		c.MaxAttempts, c.RetryBackoff = maxAttempts, 5*time.Millisecond
	}), func(*pgx.Batch, []Event) BatchHandler { return handler }))

	good := newEvents(t, testKey, 80)
	poison, err := NewEvent(poisonKey, "o-poison", "test", nil)
	require.NoError(t, err)
	backlog := slices.Concat(good[:40], []Event{poison}, good[40:])
	b.backlogBehind(t, p, g, backlog...)

	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, b.queue.DLQ()) == 1 }, 10*time.Second, time.Millisecond,
		"the poison event should be dead-lettered")
	got := b.waitEffects(t, len(good), 10*time.Second)
	require.Equal(t, effectCount{rows: len(good), distinct: len(good)}, got, "every good event applied once")
	rows, err := b.pool.Query(ctx, `SELECT event_id FROM effects`)
	require.NoError(t, err)
	applied, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	goodIDs := make([]uuid.UUID, len(good))
	for i, ev := range good {
		goodIDs[i] = ev.ID
	}
	require.ElementsMatch(t, goodIDs, applied)

	mu.Lock()
	defer mu.Unlock()
	largest, poisonAlone := 0, 0
	var poisonBatches [][]uuid.UUID
	for _, ids := range calls {
		largest = max(largest, len(ids))
		if slices.Contains(ids, poison.ID) {
			if len(ids) == 1 {
				poisonAlone++
			} else {
				poisonBatches = append(poisonBatches, ids)
			}
		}
	}
	require.Greater(t, largest, 1, "a backlog should reach the batch handler several events at a call")
	require.Equal(t, maxAttempts, poisonAlone, "the poison event alone, once per attempt")
	require.NotEmpty(t, poisonBatches, "the poison event should have failed a batch of several")
	for _, batch := range poisonBatches {
		for _, id := range batch {
			if id == poison.ID {
				continue
			}
			alone := 0
			for _, ids := range calls {
				if len(ids) == 1 && ids[0] == id {
					alone++
				}
			}
			require.Equal(t, 1, alone, "event %s of the failed batch should be applied once on its own", id)
		}
	}

	ch := dialChannel(t)
	d, ok, err := ch.Get(b.queue.DLQ(), true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, poison.ID.String(), d.MessageId)
	require.Equal(t, ReasonFailed, d.Headers[HeaderDLQReason])
	require.Contains(t, d.Headers[HeaderDLQError], poisonErr.Error())
	require.EqualValues(t, maxAttempts, d.Headers[headerDLQAttempts])
	var inInbox bool
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_inbox WHERE event_id = $1)`, poison.ID).Scan(&inInbox))
	require.False(t, inInbox, "a dead-lettered event leaves no inbox row")
	require.Equal(t, float64(len(good)), b.consumed("applied"))
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.deadLettered.WithLabelValues(b.queue.Name, ReasonFailed)))
}

func dialChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}
