package outbox

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// ackerWorld is n messages in the test's queue, fetched (unacked) on a channel of a connection
// whose socket writes are counted.
type ackerWorld struct {
	acks *acker
	sock *corkConn
	tags []uint64 // tags[i] is the i-th delivery's tag
	b    *bundle
	t    *testing.T
}

func newAckerWorld(t *testing.T, n, prefetch int) *ackerWorld {
	b := setup(t)
	b.declare(t)
	p := b.publisher(t, outboxtest.URL())
	msgs := make([]message, n)
	for i, ev := range newEvents(t, testKey, n) {
		msgs[i] = message{Key: testKey, MsgID: ev.ID.String(), Body: []byte(`{}`)}
	}
	for _, err := range p.publishAll(context.Background(), msgs) {
		require.NoError(t, err)
	}
	conn, sock, err := dialLoop(context.Background(), outboxtest.URL(), t.Name(), b.consumerConfig(nil).Logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	w := &ackerWorld{acks: newAcker(ch, prefetch), sock: sock, b: b, t: t}
	for range n {
		d, ok, err := ch.Get(b.queue.Name, false)
		require.NoError(t, err)
		require.True(t, ok)
		w.tags = append(w.tags, d.DeliveryTag)
	}
	return w
}

// frames runs f and returns how many socket writes it made (each ack frame is one).
func (w *ackerWorld) frames(f func()) int64 {
	before := w.sock.writes.Load()
	f()
	return w.sock.writes.Load() - before
}

// requeued closes the channel, which returns every unacked delivery to the queue, and counts them.
func (w *ackerWorld) requeued() int {
	require.NoError(w.t, w.acks.ch.Close())
	return outboxtest.QueueDepth(w.t, w.b.queue.Name)
}

// Two batches that end out of order are acked by one frame, when the earlier one ends.
func TestAckerAcksBatchesWithOneFrame(t *testing.T) {
	w := newAckerWorld(t, 20, 64)
	first, second := w.tags[:12], w.tags[12:]
	require.Zero(t, w.frames(func() { require.NoError(t, w.acks.ack(second...)) }),
		"the later batch waits for the earlier one")
	require.Equal(t, int64(1), w.frames(func() { require.NoError(t, w.acks.ack(first...)) }))
	require.Zero(t, w.requeued(), "the one frame acked all 20")
}

// A retrying delivery does not hold back the acks of those after it: they are acked one by
// one, and only the retrying one goes back to the queue.
func TestAckerDoesNotHoldAcksBehindARetry(t *testing.T) {
	w := newAckerWorld(t, 10, 64)
	require.NoError(t, w.acks.ack(w.tags[0]))
	require.NoError(t, w.acks.ack(w.tags[2:5]...))
	require.Equal(t, int64(3), w.frames(func() { require.NoError(t, w.acks.retrying(w.tags[1])) }),
		"what the retry held back is acked at once")
	require.Equal(t, int64(5), w.frames(func() { require.NoError(t, w.acks.ack(w.tags[5:]...)) }),
		"and so is what follows, while it retries")
	require.Equal(t, 1, w.requeued())
}

// A retrying delivery that is dead-lettered by rejection settles: later acks gather again.
func TestAckerGathersAgainAfterARetrySettles(t *testing.T) {
	w := newAckerWorld(t, 10, 64)
	require.NoError(t, w.acks.retrying(w.tags[0]))
	require.NoError(t, w.acks.reject(w.tags[0]))
	require.Equal(t, int64(1), w.frames(func() { require.NoError(t, w.acks.ack(w.tags[1:]...)) }))
	require.Zero(t, w.requeued())
}

// Less than half the prefetch window waits behind an unsettled delivery: at half, the held acks
// go out one by one, so acks held back never fill more than half the window.
func TestAckerHoldsLessThanHalfTheWindow(t *testing.T) {
	w := newAckerWorld(t, 12, 10) // holds at most 4
	require.Zero(t, w.frames(func() { require.NoError(t, w.acks.ack(w.tags[1:5]...)) }))
	require.Equal(t, int64(5), w.frames(func() { require.NoError(t, w.acks.ack(w.tags[5])) }),
		"the fifth held ack sends all five")
	require.Equal(t, int64(1), w.frames(func() { require.NoError(t, w.acks.ack(w.tags[0])) }),
		"the first settles, and low moves past the ones told")
	require.Equal(t, int64(1), w.frames(func() { require.NoError(t, w.acks.ack(w.tags[6:]...)) }))
	require.Zero(t, w.requeued())
}
