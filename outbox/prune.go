package outbox

import (
	"context"

	"github.com/riverqueue/river"
)

// pruneArgs is the periodic job that forgets inbox entries older than InboxRetention.
type pruneArgs struct{}

func (pruneArgs) Kind() string { return "outbox_prune_inbox" }

type pruneWorker struct {
	river.WorkerDefaults[pruneArgs]
	o *Outbox
}

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
