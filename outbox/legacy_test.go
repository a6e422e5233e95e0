package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// legacyRelayArgs is a relay job as written before events were batched (migration 00004): the
// job's args are the one event itself.
type legacyRelayArgs struct{ Event }

func (legacyRelayArgs) Kind() string { return "outbox_relay" }

// A job written before the upgrade (still pending, or kept for Retention) is relayed by the new
// relay, and shows in outbox_events and in the order's timeline. (The timeline missed it until
// review.)
func TestLegacyJobIsRelayedAndInTheTimeline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	url := outboxtest.URL()
	b.declare(t)
	o := b.outbox(t, url, nil)
	b.consume(t, url, recordEffect, nil)

	ev, err := NewEvent(testKey, "order-legacy", "test", map[string]int{"i": 1})
	require.NoError(t, err)
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := o.client.InsertTx(ctx, tx, legacyRelayArgs{ev}, &river.InsertOpts{Queue: defaultQueue})
		return err
	}))
	o.wake()
	b.waitEffects(t, 1, 10*time.Second) // the new relay publishes the old job: compatible

	var inView int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE order_id = $1`, ev.OrderID).Scan(&inView))
	require.Equal(t, 1, inView, "outbox_events shows the legacy job's event")

	tl, err := ReadTimeline(ctx, b.pool, ev.OrderID)
	require.NoError(t, err)
	require.Len(t, tl.Consumed, 1)
	require.Len(t, tl.Written, 1, "the timeline should show the event written before the upgrade")
}
