package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// deadLetters parks the test queue's DLQ until the test ends.
func (b *bundle) deadLetters(t *testing.T) *DeadLetters {
	t.Helper()
	d := NewDeadLetters(b.pool, DeadLetterConfig{URL: outboxtest.URL(), Exchange: b.names.Exchange, Queue: b.queue,
		Service: "test", Metrics: b.metrics})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, d.Connected, 10*time.Second, 5*time.Millisecond, "the parker never connected")
	return d
}

// waitParked waits until the service holds n dead letters and returns them.
func waitParked(t *testing.T, d *DeadLetters, n int) []DeadLetter {
	t.Helper()
	var got []DeadLetter
	require.Eventually(t, func() bool {
		var err error
		got, err = d.List(context.Background(), 100)
		return err == nil && len(got) == n
	}, 20*time.Second, 10*time.Millisecond, "want %d dead letters, have %+v", n, got)
	return got
}

// A poison event and a malformed message are dead-lettered by the consumer and parked with their
// reason, error and attempts; unknown ids change nothing; once the cause is fixed the event is
// replayed and applied exactly once, and once more if it comes back (the inbox skips it); the
// malformed one is discarded; a message the broker itself dead-lettered (a reject) is parked with
// the broker's reason; a redelivered dead letter does not make a second row.
func TestDeadLettersParkReplayDiscard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.declare(t)
	const poisonKey = "test.poison"
	var fixed atomic.Bool
	handler := func(ctx context.Context, tx pgx.Tx, ev Event) error {
		if ev.Type == poisonKey && !fixed.Load() {
			return errors.New("the referenced row is missing")
		}
		return recordEffect(ctx, tx, ev)
	}
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, ch.PublishWithContext(ctx, b.names.Exchange, testKey, false, false,
		amqp.Publishing{MessageId: "not-json", Body: []byte("{\"eventId\": \"oops\x00\xff")}))

	o := b.outbox(t, outboxtest.URL(), nil)
	poison := b.write(t, o, poisonKey, 1)[0]
	b.consume(t, outboxtest.URL(), handler, func(c *ConsumerConfig) {
		c.MaxAttempts = 3
		c.RetryBackoff = 5 * time.Millisecond
	})
	d := b.deadLetters(t)

	got := waitParked(t, d, 2)
	byReason := map[string]DeadLetter{}
	for _, dl := range got {
		byReason[dl.Reason] = dl
	}
	bad, failed := byReason[ReasonMalformed], byReason[ReasonFailed]
	require.Equal(t, "test", bad.Service)
	require.Empty(t, bad.EventID)
	require.Zero(t, bad.Attempts)
	require.Contains(t, bad.Error, "not an event")
	require.Equal(t, testKey, bad.RoutingKey)
	require.Contains(t, bad.Body, `"eventId": "oops`)
	require.Equal(t, poison.String(), failed.EventID)
	require.Equal(t, poisonKey, failed.Type)
	require.Equal(t, poisonKey, failed.RoutingKey)
	require.Equal(t, "0", failed.OrderID)
	require.Equal(t, 3, failed.Attempts)
	require.Contains(t, failed.Error, "the referenced row is missing")
	require.WithinDuration(t, time.Now(), failed.DeadLetteredAt, time.Minute)
	require.Zero(t, outboxtest.QueueDepth(t, b.queue.DLQ()), "parked, and acked in the DLQ")
	require.Zero(t, b.effects(t).rows)

	// Unknown ids, or ids that cannot be ids, are named and nothing is done.
	var unknown *UnknownDeadLettersError
	_, err = d.Replay(ctx, []string{fmtID(failed.ID), "999999", "x"})
	require.ErrorAs(t, err, &unknown)
	require.Equal(t, []string{"x"}, unknown.IDs, "an id that cannot exist is refused before the database is asked")
	_, err = d.Replay(ctx, []string{fmtID(failed.ID), "999999"})
	require.ErrorAs(t, err, &unknown)
	require.Equal(t, []string{"999999"}, unknown.IDs)
	_, err = d.Discard(ctx, []string{fmtID(bad.ID), "999999"})
	require.ErrorAs(t, err, &unknown)
	require.Equal(t, []string{"999999"}, unknown.IDs)
	require.Len(t, waitParked(t, d, 2), 2, "nothing replayed or discarded")
	require.Zero(t, b.effects(t).rows)

	// Fixed: the replay applies it, once.
	fixed.Store(true)
	replayed, err := d.Replay(ctx, []string{fmtID(failed.ID)})
	require.NoError(t, err)
	require.Equal(t, []int64{failed.ID}, replayed)
	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.waitEffects(t, 1, 20*time.Second))
	_, err = d.Replay(ctx, []string{fmtID(failed.ID)})
	require.ErrorAs(t, err, &unknown, "replayed dead letters are gone")

	// The same event dead-lettered again (say, a replay whose row survived a crash): parked anew,
	// and replaying it is a duplicate the inbox skips.
	require.NoError(t, ch.PublishWithContext(ctx, "", b.queue.DLQ(), false, false, amqp.Publishing{
		MessageId: poison.String(), Body: rawEvent(t, b, poison),
		Headers: amqp.Table{HeaderDLQReason: ReasonFailed, HeaderDLQError: "again", HeaderRoutingKey: b.queue.Name,
			headerDLQAttempts: int32(3), headerReplayRoutingKey: poisonKey},
	}))
	again := waitParked(t, d, 2)
	require.Equal(t, poisonKey, again[1].RoutingKey, "the original routing key survives a replay")
	all, err := d.Replay(ctx, nil)
	require.NoError(t, err)
	require.Len(t, all, 2, "all: the malformed one too")
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(b.metrics.consumed.WithLabelValues(b.queue.Name, poisonKey, "duplicate")) == 1
	}, 20*time.Second, 10*time.Millisecond, "the replayed duplicate is skipped by the inbox")
	require.Equal(t, effectCount{rows: 1, distinct: 1}, b.effects(t), "applied exactly once")

	// The malformed message, dead-lettered again by the replay, is discarded.
	left := waitParked(t, d, 1)
	require.Equal(t, ReasonMalformed, left[0].Reason)
	discarded, err := d.Discard(ctx, []string{fmtID(left[0].ID), fmtID(left[0].ID)})
	require.NoError(t, err)
	require.Equal(t, []int64{left[0].ID}, discarded)
	waitParked(t, d, 0)

	// The broker dead-letters a rejected message itself, with x-death; a redelivery of a parked
	// message updates its row.
	ev, err := NewEvent(testKey, "7", "test", nil)
	require.NoError(t, err)
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(ctx, "", b.queue.DLQ(), false, false, amqp.Publishing{
		MessageId: ev.ID.String(), Body: raw, Headers: amqp.Table{HeaderDLQReason: ReasonFailed, headerDLQAttempts: int32(1)}}))
	require.NoError(t, ch.PublishWithContext(ctx, "", b.queue.DLQ(), false, false, amqp.Publishing{
		MessageId: ev.ID.String(), Body: raw, Headers: amqp.Table{HeaderDLQReason: ReasonFailed, headerDLQAttempts: int32(2)}}))
	require.Eventually(t, func() bool {
		got, err := d.List(ctx, 10)
		return err == nil && len(got) == 1 && got[0].Attempts == 2 && outboxtest.QueueDepth(t, b.queue.DLQ()) == 0
	}, 20*time.Second, 10*time.Millisecond, "one row for one event")
	discardAll(t, d)
	from := rejectOne(t, b, ch)
	rejected := waitParked(t, d, 1)[0]
	require.Equal(t, "rejected", rejected.Reason)
	require.Empty(t, rejected.Error)
	require.Equal(t, from, rejected.RoutingKey, "x-death names the queue it was rejected from")

	require.Equal(t, 3.0, testutil.ToFloat64(b.metrics.replayed.WithLabelValues("test")))
	require.Equal(t, 2.0, testutil.ToFloat64(b.metrics.discarded.WithLabelValues("test")))
}

func fmtID(id int64) string { return strconv.FormatInt(id, 10) }

func discardAll(t *testing.T, d *DeadLetters) {
	t.Helper()
	got, err := d.List(context.Background(), 100)
	require.NoError(t, err)
	ids := make([]string, len(got))
	for i, dl := range got {
		ids[i] = fmtID(dl.ID)
	}
	_, err = d.Discard(context.Background(), ids)
	require.NoError(t, err)
}

// rawEvent is the JSON the relay published for the event id.
func rawEvent(t *testing.T, b *bundle, id interface{ String() string }) []byte {
	t.Helper()
	var raw []byte
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT event::text FROM outbox_events WHERE event_id = $1`, id.String()).Scan(&raw))
	return raw
}

// rejectOne takes a message off a queue of its own and rejects it without requeue: the broker
// dead-letters it. It returns the queue's name.
func rejectOne(t *testing.T, b *bundle, ch *amqp.Channel) (queue string) {
	t.Helper()
	q := b.queue
	q.Name = b.names.Queue("test.reject")
	require.NoError(t, declareQueue(ch, b.names.Exchange, q))
	ev, err := NewEvent(testKey, "8", "test", nil)
	require.NoError(t, err)
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "", q.Name, false, false, amqp.Publishing{MessageId: ev.ID.String(), Body: raw}))
	var m amqp.Delivery
	require.Eventually(t, func() bool {
		var ok bool
		m, ok, err = ch.Get(q.Name, false)
		require.NoError(t, err)
		return ok
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, m.Reject(false))
	// Its DLQ is another queue than the parker's: park it from there.
	d := NewDeadLetters(b.pool, DeadLetterConfig{URL: outboxtest.URL(), Exchange: b.names.Exchange, Queue: q, Service: "test"})
	require.Eventually(t, func() bool {
		n, err := d.Drain(context.Background())
		require.NoError(t, err)
		return n == 1
	}, 10*time.Second, 10*time.Millisecond)
	return q.Name
}
