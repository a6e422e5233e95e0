package outbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// 1. An event written in a rolled-back transaction is never published; a committed one is.
func TestRolledBackEventIsNeverPublished(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.outbox(t, outboxtest.URL(), nil)
	b.consume(t, outboxtest.URL(), recordEffect, nil)
	ctx := context.Background()

	lost, err := NewEvent(testKey, "1", "test", nil)
	require.NoError(t, err)
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, o.Write(ctx, tx, lost))
	require.NoError(t, tx.Rollback(ctx))

	kept := b.write(t, o, testKey, 1)[0]
	b.waitEffects(t, 1, 10*time.Second)
	// With the relay's backlog empty and the queue drained, nothing can still arrive.
	b.waitBacklogEmpty(t, o, 30*time.Second)
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.Name))

	var ids []string
	rows, err := b.pool.Query(ctx, `SELECT event_id::text FROM effects`)
	require.NoError(t, err)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{kept.String()}, ids)
	require.Equal(t, 1.0, b.consumed("applied"))
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.published.WithLabelValues("test", testKey)))
}

// 2. A relay killed after the broker's confirm but before marking the event sent: another
// relay re-sends it, and the consumer's inbox makes the effect happen once.
func TestRelayCrashAfterConfirmResendsAndEffectIsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	exited := b.startChild(t, "relay")
	// A write-only outbox: the child is the only relay running while the event is written.
	writer, err := New(b.pool, Config{Service: "test"})
	require.NoError(t, err)
	id := b.write(t, writer, testKey, 1)[0]

	select {
	case code := <-exited:
		require.Equal(t, exitCrashed, code, "the child relay should die in the crash hook")
	case <-time.After(20 * time.Second):
		t.Fatal("the child relay never published")
	}
	var state string
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT state FROM outbox_events WHERE event_id = $1`, id.String()).Scan(&state))
	require.Equal(t, "running", state, "the crash left the event unmarked")
	require.Equal(t, 1, outboxtest.QueueDepth(t, b.queue.Name), "the broker has the first copy")

	// A new relay takes over once the dead one's leadership lapses, rescues the stuck job and
	// publishes it again; the consumer applies the first copy and skips the second.
	o := b.outbox(t, outboxtest.URL(), func(c *Config) {
		c.PublishTimeout = 500 * time.Millisecond
		c.RescueAfter = time.Second
	})
	b.consume(t, outboxtest.URL(), recordEffect, nil)
	// Up to: the dead leader's lease (15s) + an election attempt (5s) + River's scheduler tick
	// (5s) that makes the rescued job available again.
	b.waitBacklogEmpty(t, o, 60*time.Second)
	require.Eventually(t, func() bool { return b.consumed("duplicate") == 1 }, 20*time.Second, 10*time.Millisecond,
		"the re-sent copy should arrive and be skipped")
	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.effects(t))
	require.Equal(t, 1.0, b.consumed("applied"))
}

// 3. A consumer that dies after its commit and before its ack: the broker redelivers, and the
// effect still happens once.
func TestConsumerCrashAfterCommitBeforeAck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	exited := b.startChild(t, "consumer")
	o := b.outbox(t, outboxtest.URL(), nil)
	b.write(t, o, testKey, 1)

	select {
	case code := <-exited:
		require.Equal(t, exitCrashed, code, "the child consumer should die in the crash hook")
	case <-time.After(20 * time.Second):
		t.Fatal("the child consumer never applied the event")
	}
	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.effects(t), "the child committed its effect")

	b.consume(t, outboxtest.URL(), recordEffect, nil)
	require.Eventually(t, func() bool { return b.consumed("duplicate") == 1 }, 20*time.Second, 10*time.Millisecond,
		"the unacked delivery should come back and be skipped")
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.redelivered.WithLabelValues(b.queue.Name)))
	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.effects(t))
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.Name))
}

// 4. The RabbitMQ connections of both the relay and the consumer are cut, twice, while 1,000
// events flow: afterwards every effect has happened exactly once.
func TestConnectionCutWhileEventsFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	proxy := outboxtest.NewProxy(t, "127.0.0.1:5672")
	if u := outboxtest.URL(); u != outboxtest.DefaultURL {
		t.Skipf("the proxy targets the default broker; AMQP_URL is %s", u)
	}
	o := b.outbox(t, proxy.AMQPURL(), nil)
	b.consume(t, proxy.AMQPURL(), recordEffect, func(c *ConsumerConfig) { c.Prefetch = 32 })

	const writers, perWriter = 10, 100
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range perWriter / 10 {
				b.write(t, o, testKey, 10)
			}
		})
	}
	cuts := 0
	for _, at := range []int{150, 500} {
		require.Eventually(t, func() bool { return b.effects(t).distinct >= at }, 30*time.Second, time.Millisecond)
		cuts += proxy.Cut()
	}
	wg.Wait()
	require.GreaterOrEqual(t, cuts, 2, "connections should have been cut while events flowed")

	got := b.waitEffects(t, writers*perWriter, 60*time.Second)
	b.waitBacklogEmpty(t, o, 30*time.Second)
	require.Equal(t, effectCount{rows: 1000, distinct: 1000}, got, "every effect once")
	require.Equal(t, effectCount{rows: 1000, distinct: 1000}, b.effects(t))
}

// 5. A malformed message and an event whose handler always fails both end in the DLQ with their
// reason, and the 100 good events behind them are all applied.
func TestPoisonMessagesAreDeadLetteredAndDoNotBlock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	const poisonKey = "test.poison"
	handler := func(ctx context.Context, tx pgx.Tx, ev Event) error {
		if err := recordEffect(ctx, tx, ev); err != nil {
			return err
		}
		if ev.Type == poisonKey {
			return errors.New("this handler always fails")
		}
		return nil
	}

	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), b.names.Exchange, testKey, false, false,
		amqp.Publishing{MessageId: "not-json", Body: []byte(`{"eventId": "oops`)}))

	o := b.outbox(t, outboxtest.URL(), nil)
	poison := b.write(t, o, poisonKey, 1)[0]
	for range 10 {
		b.write(t, o, testKey, 10)
	}
	b.consume(t, outboxtest.URL(), handler, func(c *ConsumerConfig) {
		c.MaxAttempts = 3
		c.RetryBackoff = 5 * time.Millisecond
	})

	got := b.waitEffects(t, 100, 20*time.Second)
	require.Equal(t, effectCount{rows: 100, distinct: 100}, got, "the failing handler's effect is rolled back")
	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, b.queue.DLQ()) == 2 }, 10*time.Second, 10*time.Millisecond)

	reasons := map[string]amqp.Delivery{}
	for range 2 {
		d, ok, err := ch.Get(b.queue.DLQ(), true)
		require.NoError(t, err)
		require.True(t, ok)
		reasons[d.Headers[HeaderDLQReason].(string)] = d
	}
	require.Contains(t, reasons, ReasonMalformed)
	require.Contains(t, reasons[ReasonMalformed].Headers[HeaderDLQError], "not an event")
	require.Equal(t, testKey, reasons[ReasonMalformed].Headers[HeaderRoutingKey])
	require.Contains(t, reasons, ReasonFailed)
	require.Equal(t, poison.String(), reasons[ReasonFailed].MessageId)
	require.Contains(t, reasons[ReasonFailed].Headers[HeaderDLQError], "this handler always fails")
	require.EqualValues(t, 3, reasons[ReasonFailed].Headers[headerDLQAttempts])

	var inInbox bool
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM outbox_inbox WHERE event_id = $1)`, poison).Scan(&inInbox))
	require.False(t, inInbox, "a dead-lettered event leaves no inbox row, so a replay from the DLQ applies it")
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.deadLettered.WithLabelValues(b.queue.Name, ReasonMalformed)))
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.deadLettered.WithLabelValues(b.queue.Name, ReasonFailed)))
}

// 6. Two relays and two consumers on the same database and queue: nothing lost, nothing twice.
func TestTwoRelaysTwoConsumers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	o1 := b.outbox(t, outboxtest.URL(), nil)
	o2 := b.outbox(t, outboxtest.URL(), func(c *Config) { // the other wake-up: polling, no NOTIFY
		c.PollOnly, c.FetchPollInterval = true, 5*time.Millisecond
	})
	b.consume(t, outboxtest.URL(), recordEffect, nil)
	b.consume(t, outboxtest.URL(), recordEffect, nil)

	var wg sync.WaitGroup
	for _, o := range []*Outbox{o1, o2} {
		wg.Go(func() {
			for range 25 {
				b.write(t, o, testKey, 10)
			}
		})
	}
	wg.Wait()
	got := b.waitEffects(t, 500, 30*time.Second)
	b.waitBacklogEmpty(t, o1, 30*time.Second)
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.Name))
	require.Equal(t, effectCount{rows: 500, distinct: 500}, got)
	require.Equal(t, effectCount{rows: 500, distinct: 500}, b.effects(t))
}

// Unroutable events are retried until a queue exists, unless their key is optional.
func TestUnroutableEventWaitsForAQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.outbox(t, outboxtest.URL(), func(c *Config) {
		c.Optional = func(key string) bool { return key == "test.optional" }
	})
	b.write(t, o, "test.optional", 1)
	b.write(t, o, testKey, 1)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(b.metrics.unroutable.WithLabelValues("test", testKey)) >= 2
	}, 10*time.Second, 5*time.Millisecond, "the required event should be returned and retried")
	n, _, err := o.Backlog(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the optional event is done, the required one waits")

	b.consume(t, outboxtest.URL(), recordEffect, nil)
	b.waitEffects(t, 1, 20*time.Second)
	b.waitBacklogEmpty(t, o, 30*time.Second)
}

// A consumer whose queue is deleted under it (the broker cancels it while the connection lives)
// notices, reconnects, declares the queue again, and consumes what follows.
func TestConsumerRecoversWhenItsQueueIsDeleted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.outbox(t, outboxtest.URL(), nil)
	c := b.consume(t, outboxtest.URL(), recordEffect, nil)
	b.write(t, o, testKey, 1)
	b.waitEffects(t, 1, 10*time.Second)

	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(b.queue.Name, false, false, false)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !c.Connected() }, 10*time.Second, time.Millisecond,
		"the consumer should notice its cancellation")

	b.write(t, o, testKey, 1)
	require.Equal(t, effectCount{rows: 2, distinct: 2}, b.waitEffects(t, 2, 20*time.Second))
}

// Publish after Close fails at once instead of waiting for a connection that will never come.
func TestPublishAfterCloseFails(t *testing.T) {
	t.Parallel()
	p := NewPublisher(PublisherConfig{URL: "amqp://guest:guest@127.0.0.1:1/"})
	p.Close()
	err := p.Publish(context.Background(), testKey, "id-1", []byte(`{}`), nil)
	require.ErrorIs(t, err, errPublisherClosed)
	require.ErrorContains(t, p.Publish(context.Background(), testKey, "", nil, nil), "message-id is required")
}

// The relay's leader forgets inbox entries older than the retention, and keeps the rest.
func TestInboxIsPrunedAfterRetention(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `INSERT INTO outbox_inbox (event_id, event_type, consumed_at) VALUES
		(gen_random_uuid(), 'old', now() - interval '8 days'), (gen_random_uuid(), 'recent', now() - interval '6 days')`)
	require.NoError(t, err)
	b.outbox(t, outboxtest.URL(), func(c *Config) { c.InboxRetention = 7 * 24 * time.Hour })
	require.Eventually(t, func() bool {
		var types []string
		rows, err := b.pool.Query(ctx, `SELECT event_type FROM outbox_inbox ORDER BY event_type`)
		require.NoError(t, err)
		types, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return len(types) == 1 && types[0] == "recent"
	}, 30*time.Second, 20*time.Millisecond)
}

// A commit followed by wake is relayed at once, though the relay would not poll for ten minutes:
// the NOTIFY, sent outside the writing transaction, wakes it.
func TestWakeRelaysWithoutWaitingForThePoll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := outboxtest.URL()
	b.declare(t)
	o := b.outbox(t, url, func(c *Config) { c.FetchPollInterval = 10 * time.Minute })
	b.consume(t, url, recordEffect, nil)
	for i := 1; i <= 3; i++ { // the first could be found by the relay's start-up fetch; the rest cannot
		b.write(t, o, "test.woken", 1)
		o.wake()
		b.waitEffects(t, i, 10*time.Second)
	}
}
