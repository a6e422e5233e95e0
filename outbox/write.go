package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river/rivertype"
)

// relayArgs is the River job that carries the events one transaction wrote: the job row is their
// outbox row. Each event is kept as its JSON and published as it is. OrderIDs (distinct) is what
// the order timeline's index finds jobs by. A job written before events were batched has no
// Events: its arguments are the one event itself.
type relayArgs struct {
	Events   []json.RawMessage `json:"events"`
	OrderIDs []string          `json:"orderIds"`
}

// eventHead is the part of an event's JSON the relay reads.
type eventHead struct {
	ID          uuid.UUID `json:"eventId"`
	Type        string    `json:"type"`
	OrderID     string    `json:"orderId"`
	TraceParent string    `json:"traceparent"`
}

// maxEventsPerJob bounds one relay job: a job is retried whole, and republishes all its events.
const maxEventsPerJob = 256

func (relayArgs) Kind() string { return "outbox_relay" }

// Write records events in tx: they are published if and only if tx commits. In a Tx (InTx,
// Begin, every consumer transaction; ctx must be the Tx's) they are inserted with its COMMIT and
// published after it, directly or by waking the relay. In any other transaction they are
// inserted at once, and the relay finds them at its next poll (Config.FetchPollInterval): use a Tx
// to have them published at once.
func (o *Outbox) Write(ctx context.Context, tx pgx.Tx, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return fmt.Errorf("outbox: %s: %w", events[i].Type, err)
		}
		stamp(ctx, &events[i])
	}
	if s := scopeOf(ctx, tx); s != nil {
		s.deferWrite(o, events) // inserted with the COMMIT, with the rest of the transaction's events
		return nil
	}
	b := &pgx.Batch{}
	if err := o.queueInsert(b, events, false, nil); err != nil {
		return err
	}
	return tx.SendBatch(ctx, b).Close()
}

// insertJobs writes relay jobs as River's own insert (JobInsertFastMany) would, without the
// unique keys relay jobs never have, in one statement however many, and returns their ids. The
// time they were written is the statement's (River's client stamps its own clock), not the
// transaction's start: sent with the COMMIT, it orders them as their transactions committed.
// Writing them here, rather than through River's client, lets the insert go out in the same
// round trip as the COMMIT, and saves River re-encoding the events.
const insertJobs = `
INSERT INTO river_job (args, kind, max_attempts, queue, created_at, scheduled_at, state)
SELECT a.args, $2, $3, $4, clock_timestamp(), coalesce($5, clock_timestamp()), $6::river_job_state
FROM unnest($1::jsonb[]) WITH ORDINALITY AS a(args, n) ORDER BY a.n
RETURNING id`

// queueInsert queues in b the insert of validated, stamped events as relay jobs (one job per
// maxEventsPerJob events). With direct, the jobs are due only after the grace, and once the
// batch's results are read they are handed to jobs, for dispatch after the commit.
func (o *Outbox) queueInsert(b *pgx.Batch, events []Event, direct bool, jobs func([]directJob)) error {
	var due *time.Time // nil: due now, by the database's clock
	state := rivertype.JobStateAvailable
	if direct {
		at := time.Now().Add(o.cfg.DirectGrace)
		due, state = &at, rivertype.JobStateScheduled
	}
	var args [][]byte
	var pending []directJob
	for chunk := range slices.Chunk(events, maxEventsPerJob) {
		j := directJob{events: make([]json.RawMessage, len(chunk))}
		var orderIDs []string
		for i, e := range chunk {
			raw, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("outbox: encode %s: %w", e.Type, err)
			}
			j.events[i] = raw
			if direct {
				j.heads = append(j.heads, eventHead{ID: e.ID, Type: e.Type, OrderID: e.OrderID, TraceParent: e.TraceParent})
			}
			if !slices.Contains(orderIDs, e.OrderID) {
				orderIDs = append(orderIDs, e.OrderID)
			}
		}
		args = append(args, encodeRelayArgs(j.events, orderIDs))
		if direct {
			j.due = *due
		}
		pending = append(pending, j)
	}
	b.Queue(insertJobs, args, relayArgs{}.Kind(), int16(math.MaxInt16), o.cfg.Queue, due, string(state)).Query(
		func(rows pgx.Rows) error {
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
				return fmt.Errorf("outbox: write %d events: %w", len(events), err) // nothing commits
			}
			if err == nil && len(ids) != len(pending) {
				err = fmt.Errorf("inserted %d relay jobs, expected %d", len(ids), len(pending))
			}
			if err != nil {
				// The jobs were written; which is which is not known here, so the relay publishes
				// them, after the grace. Failing here would report a COMMIT that ran as failed.
				o.cfg.Logger.Warn("outbox: relay jobs written but not read back; the relay will publish them", "err", err)
				return nil
			}
			if direct {
				slices.Sort(ids) // the sequence numbered them in the order they were inserted
				for i := range pending {
					pending[i].id = ids[i]
				}
				jobs(pending)
			}
			return nil
		})
	return nil
}

// encodeRelayArgs is relayArgs{Events: events, OrderIDs: orderIDs} as JSON, without encoding
// the events again (each is JSON already).
func encodeRelayArgs(events []json.RawMessage, orderIDs []string) []byte {
	ids, _ := json.Marshal(orderIDs) // strings always encode
	n := len(`{"events":[],"orderIds":}`) + len(ids) + len(events)
	for _, e := range events {
		n += len(e)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, `{"events":[`...)
	for i, e := range events {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	buf = append(buf, `],"orderIds":`...)
	buf = append(buf, ids...)
	return append(buf, '}')
}
