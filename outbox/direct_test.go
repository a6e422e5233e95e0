package outbox

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// writeScoped commits n events through a Tx, as consumer transactions and order placements
// do; committed says whether to hand them over after the commit (false: the process "died" in
// between).
func (b *bundle) writeScoped(t *testing.T, o *Outbox, n int, committed bool) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, 0, n)
	ctx, tx := b.beginTx(t)
	for i := range n {
		ev, err := NewEvent(testKey, fmt.Sprint(i), "test", map[string]int{"i": i})
		require.NoError(t, err)
		ids = append(ids, ev.ID)
		require.NoError(t, o.Write(ctx, tx, ev))
	}
	if committed {
		require.NoError(t, tx.Commit(ctx))
	} else {
		require.NoError(t, tx.commit(ctx))
	}
	return ids
}

// relayJobs counts the relay's jobs by state and attempt.
func (b *bundle) relayJobs(t *testing.T) map[string]int {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT state::text || '/' || attempt, count(*) FROM river_job WHERE kind = 'outbox_relay' GROUP BY 1`)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		out[k] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// With DirectPublish, committed events are published by the committing process: no relay runs
// here at all (River is never started), yet every event arrives once and its job is done, as
// the relay would have left it.
func TestDirectPublishNeedsNoRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := outboxtest.URL()
	b.declare(t)
	o, err := New(b.pool, Config{Service: "test", Publisher: b.publisher(t, url), Metrics: b.metrics,
		DirectPublish: true, DirectGrace: time.Minute})
	require.NoError(t, err)
	b.consume(t, url, recordEffect, nil)
	for range 5 {
		b.writeScoped(t, o, 20, true)
	}
	require.Equal(t, effectCount{rows: 100, distinct: 100}, b.waitEffects(t, 100, 10*time.Second))
	require.Eventually(t, func() bool { return b.relayJobs(t)["completed/1"] == 5 }, 10*time.Second, 10*time.Millisecond,
		"jobs: %v", b.relayJobs(t))
	b.waitBacklogEmpty(t, o, 10*time.Second)
}

// What the dispatcher cannot publish is the relay's after the grace: the broker unreachable from
// the committing process, or the process gone between commit and dispatch. Each event still
// arrives, once.
func TestDirectPublishFallsBackToTheRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := outboxtest.URL()
	b.declare(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0") // a port where nothing will answer AMQP
	require.NoError(t, err)
	deadURL := "amqp://guest:guest@" + dead.Addr().String() + "/"
	require.NoError(t, dead.Close())

	const grace = 300 * time.Millisecond
	cut, err := New(b.pool, Config{Service: "test", Publisher: b.publisher(t, deadURL), Metrics: b.metrics,
		DirectPublish: true, DirectGrace: grace})
	require.NoError(t, err)
	b.consume(t, url, recordEffect, nil)

	unreachable := b.writeScoped(t, cut, 10, true)
	crashed := b.writeScoped(t, cut, 10, false)

	// The relay, elsewhere, with the broker in reach: it takes both jobs once they are due.
	relay := b.outbox(t, url, func(c *Config) { c.FetchPollInterval = 50 * time.Millisecond })
	got := b.waitEffects(t, len(unreachable)+len(crashed), 30*time.Second)
	require.Equal(t, effectCount{rows: 20, distinct: 20}, got)
	b.waitBacklogEmpty(t, relay, 10*time.Second)
	require.Equal(t, map[string]int{"completed/1": 2}, b.relayJobs(t), "the relay's first attempt")
}
