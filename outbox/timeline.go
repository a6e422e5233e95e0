package outbox

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/rivertype"
)

// Timeline is what one service's database knows of one order's events: those it wrote (with
// when the broker confirmed them) and those it consumed.
type Timeline struct {
	Written  []Written  `json:"written"`
	Consumed []Consumed `json:"consumed"`
}

// Written is an event a service wrote to its outbox.
type Written struct {
	EventID     string     `json:"eventId"`
	Type        string     `json:"type"`
	Producer    string     `json:"producer"`
	WrittenAt   time.Time  `json:"writtenAt"`
	PublishedAt *time.Time `json:"publishedAt,omitempty"` // when the broker confirmed it
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
}

// Consumed is an event a service applied.
type Consumed struct {
	EventID    string    `json:"eventId"`
	Type       string    `json:"type"`
	ConsumedAt time.Time `json:"consumedAt"`
}

// ReadTimeline reads one order's timeline from a service's database (published events are kept
// for the outbox's Retention; consumed ones for as long as the inbox keeps them).
func ReadTimeline(ctx context.Context, pool *pgxpool.Pool, orderID string) (Timeline, error) {
	tl := Timeline{Written: []Written{}, Consumed: []Consumed{}}
	rows, err := pool.Query(ctx, `
SELECT event_id, type, event->>'producer', created_at, CASE WHEN state = 'completed' THEN finalized_at END, state, attempt
FROM outbox_events
WHERE order_id = $1 AND job_id IN (
	SELECT id FROM river_job WHERE kind = 'outbox_relay' AND args->'orderIds' ? $1
	UNION ALL -- jobs written before events were batched (migration 00004)
	SELECT id FROM river_job WHERE kind = 'outbox_relay' AND args ? 'orderId' AND args->>'orderId' = $1)
ORDER BY created_at, job_id, position`, customPlan, orderID)
	if err != nil {
		return tl, err
	}
	written, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Written, error) {
		var w Written
		var state rivertype.JobState
		err := r.Scan(&w.EventID, &w.Type, &w.Producer, &w.WrittenAt, &w.PublishedAt, &state, &w.Attempts)
		w.State = string(state)
		return w, err
	})
	if err != nil {
		return tl, err
	}
	tl.Written = append(tl.Written, written...)
	rows, err = pool.Query(ctx, `
SELECT event_id::text, event_type, consumed_at FROM outbox_inbox WHERE order_id = $1 ORDER BY consumed_at`, customPlan, orderID)
	if err != nil {
		return tl, err
	}
	consumed, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Consumed])
	tl.Consumed = append(tl.Consumed, consumed...)
	return tl, err
}
