package outbox

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// Tests of a consumer whose database is away (unreachable, restarting, dropping connections) or
// whose transactions lose conflicts: nothing is dead-lettered for it, and nothing is lost.

// proxiedPool is a pool on the test's database through a proxy the test can stop and start.
func (b *bundle) proxiedPool(t *testing.T) (*outboxtest.Proxy, *pgxpool.Pool) {
	t.Helper()
	u, err := url.Parse(b.dbURL)
	require.NoError(t, err)
	proxy := outboxtest.NewProxy(t, u.Host)
	pool, err := pgxpool.New(context.Background(), proxy.URL(t, b.dbURL))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return proxy, pool
}

func (b *bundle) waited(reason string) float64 {
	return testutil.ToFloat64(b.metrics.waited.WithLabelValues(b.queue.Name, reason))
}

func (b *bundle) unavailableGauge() float64 {
	return testutil.ToFloat64(b.metrics.unavailable.WithLabelValues(b.queue.Name))
}

// The consumer's database goes away (connections cut, new ones refused) while events keep
// arriving, for far longer than MaxAttempts tries take: the deliveries wait, unacked, the
// consumer reports the outage, nothing is dead-lettered, and once the database is back every
// event is applied exactly once. One by one (BatchSize 1: settleAlone) and in batches (settleBatch).
func TestDatabaseOutageKeepsDeliveriesUntilItEnds(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{1, 32} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.declare(t)
			proxy, pool := b.proxiedPool(t)
			p := b.publisher(t, outboxtest.URL())
			const maxAttempts = 3
			c := NewConsumer(pool, b.consumerConfig(func(c *ConsumerConfig) {
				c.BatchSize, c.MaxAttempts, c.Concurrency = batch, maxAttempts, 8
				c.RetryBackoff, c.MaxRetryBackoff = 10*time.Millisecond, 100*time.Millisecond
			}), EachEvent(recordEffect))
			b.run(t, c)

			b.publish(t, p, newEvents(t, testKey, 5)...)
			b.waitEffects(t, 5, 20*time.Second)
			require.NoError(t, c.Err())

			proxy.Stop()
			b.publish(t, p, newEvents(t, testKey, 40)...)
			require.Eventually(t, func() bool { return c.Err() != nil }, 20*time.Second, 5*time.Millisecond,
				"the consumer should report its database unavailable")
			require.ErrorContains(t, c.Err(), "database unavailable")
			require.Error(t, c.Err())
			// Tries far beyond MaxAttempts: at most 8 transactions wait (Concurrency), so on average
			// each was tried 30 times, where 3 failures dead-lettered it before.
			require.Eventually(t, func() bool { return b.waited("unavailable") >= 10*maxAttempts*8 }, 60*time.Second, 10*time.Millisecond,
				"the deliveries should be tried again and again")
			require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()), "nothing dead-lettered during the outage")
			require.Equal(t, 5, b.effects(t).distinct, "nothing applied during the outage")
			require.Equal(t, 1.0, b.unavailableGauge())
			require.Error(t, c.Err(), "still unavailable")

			require.NoError(t, proxy.Start())
			got := b.waitEffects(t, 45, 60*time.Second)
			require.Equal(t, effectCount{rows: 45, distinct: 45}, got, "every event applied exactly once")
			require.Eventually(t, func() bool { return c.Err() == nil }, 20*time.Second, 5*time.Millisecond, "healthy again once the database is back")
			require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, b.queue.Name) == 0 }, 20*time.Second, 10*time.Millisecond)
			require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()), "the DLQ is empty")
			require.Equal(t, effectCount{rows: 45, distinct: 45}, b.effects(t))
			require.Equal(t, 45.0, b.consumed("applied"))
			require.Zero(t, testutil.ToFloat64(b.metrics.deadLettered.WithLabelValues(b.queue.Name, ReasonFailed)))
			require.Zero(t, testutil.ToFloat64(b.metrics.retried.WithLabelValues(b.queue.Name)), "no handler attempt was counted")
			require.Zero(t, b.unavailableGauge())
		})
	}
}

// A consumer stopped while its database is away ends at once, even in the middle of a long
// backoff, and leaves its deliveries unacked in the queue: not applied, not dead-lettered.
func TestShutdownDuringDatabaseOutageLeavesDeliveriesQueued(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	proxy, pool := b.proxiedPool(t)
	p := b.publisher(t, outboxtest.URL())
	c := NewConsumer(pool, b.consumerConfig(func(c *ConsumerConfig) {
		c.MaxAttempts, c.BatchSize, c.Concurrency = 1, 1, 8      // each delivery waits on its own
		c.RetryBackoff, c.MaxRetryBackoff = time.Hour, time.Hour // only a shutdown ends the wait
	}), EachEvent(recordEffect))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	require.Eventually(t, c.Connected, 10*time.Second, 5*time.Millisecond, "consumer never connected")

	proxy.Stop()
	b.publish(t, p, newEvents(t, testKey, 3)...)
	require.Eventually(t, func() bool { return b.waited("unavailable") >= 3 }, 20*time.Second, 5*time.Millisecond,
		"every delivery should be waiting for the database")
	require.Error(t, c.Err())

	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not stop while waiting for its database")
	}
	require.NoError(t, c.Err(), "a stopped consumer waits for nothing")
	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, b.queue.Name) == 3 }, 20*time.Second, 10*time.Millisecond,
		"the deliveries go back to the queue")
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()))
	require.Zero(t, b.effects(t).rows)
}

// A transaction that loses a deadlock or serialization conflict is tried again however often it
// happens, without counting as a handler attempt and without the consumer reporting an outage.
func TestConflictsAreTriedAgainWithoutCounting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	p := b.publisher(t, outboxtest.URL())
	var calls atomic.Int32
	const conflicts = 6
	handler := func(ctx context.Context, tx pgx.Tx, ev Event) error {
		switch n := calls.Add(1); {
		case n <= conflicts/2:
			_, err := tx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; END $$`)
			return fmt.Errorf("apply: %w", err)
		case n <= conflicts:
			_, err := tx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END $$`)
			return err
		}
		return recordEffect(ctx, tx, ev)
	}
	c := NewConsumer(b.pool, b.consumerConfig(func(c *ConsumerConfig) {
		c.MaxAttempts = 2
		c.RetryBackoff, c.MaxRetryBackoff = 5*time.Millisecond, 20*time.Millisecond
	}), EachEvent(handler))
	b.run(t, c)
	b.publish(t, p, newEvents(t, testKey, 1)...)

	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.waitEffects(t, 1, 20*time.Second))
	require.Equal(t, float64(conflicts), b.waited("conflict"))
	require.Zero(t, b.waited("unavailable"))
	require.Zero(t, testutil.ToFloat64(b.metrics.retried.WithLabelValues(b.queue.Name)))
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()))
	require.NoError(t, c.Err())
}

// The connection dies in the COMMIT's round trip (a statement deferred to it ends its own
// session), so Commit cannot tell whether it committed (ErrCommitUnknown): the delivery is tried
// again, not dead-lettered even with MaxAttempts 1, and the inbox keeps the effect single.
func TestCommitOutcomeUnknownIsTriedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	// The premise: such a commit's outcome is unknown to the Tx.
	ctx, tx := b.beginTx(t)
	require.NoError(t, ExecAtCommit(ctx, tx, `SELECT pg_terminate_backend(pg_backend_pid())`))
	require.ErrorIs(t, tx.Commit(ctx), ErrCommitUnknown)

	p := b.publisher(t, outboxtest.URL())
	var calls atomic.Int32
	handler := func(ctx context.Context, tx pgx.Tx, ev Event) error {
		if calls.Add(1) == 1 {
			if err := ExecAtCommit(ctx, tx, `SELECT pg_terminate_backend(pg_backend_pid())`); err != nil {
				return err
			}
		}
		return recordEffect(ctx, tx, ev)
	}
	c := NewConsumer(b.pool, b.consumerConfig(func(c *ConsumerConfig) {
		c.MaxAttempts = 1
		c.RetryBackoff = 5 * time.Millisecond
	}), EachEvent(handler))
	b.run(t, c)
	ev := newEvents(t, testKey, 1)[0]
	b.publish(t, p, ev)

	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.waitEffects(t, 1, 20*time.Second))
	require.Eventually(t, func() bool { return b.consumed("applied") == 1 }, 10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 2, calls.Load(), "tried again once")
	require.Equal(t, 1.0, b.waited("unavailable"))
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()))
	var inbox int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM outbox_inbox WHERE event_id = $1`, ev.ID).Scan(&inbox))
	require.Equal(t, 1, inbox)
	require.NoError(t, c.Err())
}
