package outbox

import (
	"context"
	"time"

	"github.com/riverqueue/river"
)

// pruneArgs is the periodic job that forgets inbox entries older than InboxRetention.
type pruneArgs struct{}

func (pruneArgs) Kind() string { return "outbox_prune_inbox" }

// pruneJob runs the prune every ten minutes, and once when the relay starts: River's
// leader among the relays enqueues it, and whichever relay fetches it runs it.
func pruneJob(queue string) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(10*time.Minute),
		func() (river.JobArgs, *river.InsertOpts) { return pruneArgs{}, &river.InsertOpts{Queue: queue} },
		&river.PeriodicJobOpts{ID: "outbox_prune_inbox", RunOnStart: true})
}

// pruneWorker deletes the inbox entries older than InboxRetention: past that window a
// redelivered or replayed event is no longer recognised as applied.
type pruneWorker struct {
	river.WorkerDefaults[pruneArgs]
	o *Outbox
}

// Work deletes the expired entries in slices of 10,000.
func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[pruneArgs]) error {
	// In slices, so one run never holds a long transaction over a large inbox.
	for {
		tag, err := w.o.pool.Exec(ctx, `
DELETE FROM outbox_inbox WHERE event_id IN (
	SELECT event_id FROM outbox_inbox WHERE consumed_at < now() - make_interval(secs => $1) LIMIT 10000)`, customPlan,
			w.o.cfg.InboxRetention.Seconds())
		if err != nil || tag.RowsAffected() < 10000 {
			return err
		}
	}
}
