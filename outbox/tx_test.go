package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
)

// beginTx begins a Tx on the bundle's pool, as the services do.
func (b *bundle) beginTx(t *testing.T) (context.Context, *Tx) {
	t.Helper()
	batch := &pgx.Batch{}
	batch.BeginTx(pgx.TxOptions{})
	ctx, tx, br := Begin(context.Background(), b.pool, batch)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	require.NoError(t, br.Close())
	return ctx, tx
}

// The relay jobs a Tx inserts itself are the rows River's own insert writes for the same job:
// River fetches, works and completes them as its own. Compared column by column with a job
// inserted through River's client in the same transaction.
func TestTxWritesRelayJobsAsRiverDoes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprint("direct=", direct), func(t *testing.T) {
			o, err := New(b.pool, Config{Service: "test", DirectGrace: time.Minute})
			require.NoError(t, err)
			o.cfg.DirectPublish = direct // as with a Publisher; none runs here
			evs := newEvents(t, testKey, 3)
			evs[2].OrderID = evs[0].OrderID // distinct order ids only

			ctx, tx := b.beginTx(t)
			require.NoError(t, o.Write(ctx, tx, evs...))
			require.Len(t, tx.scope.writes[o], 3, "in a Tx, the write waits for the commit")
			// River's insert of the same job, for comparison.
			args := relayArgs{OrderIDs: []string{evs[0].OrderID, evs[1].OrderID}}
			for _, e := range evs {
				raw, err := json.Marshal(e)
				require.NoError(t, err)
				args.Events = append(args.Events, raw)
			}
			opts := &river.InsertOpts{Queue: DefaultQueue, MaxAttempts: math.MaxInt16}
			if direct {
				opts.ScheduledAt = time.Now().Add(time.Minute)
			}
			theirs, err := o.client.InsertTx(ctx, tx, args, opts)
			require.NoError(t, err)
			require.NoError(t, tx.commit(ctx))

			const cols = `state, attempt, max_attempts, priority, kind, queue, args, metadata, tags, unique_key,
	unique_states, attempted_at, attempted_by, errors, finalized_at`
			row := func(where string, arg any) string {
				var s string
				require.NoError(t, b.pool.QueryRow(context.Background(),
					`SELECT row(`+cols+`)::text FROM river_job WHERE `+where, arg).Scan(&s))
				return s
			}
			ours := `kind = 'outbox_relay' AND id <> $1 AND args -> 'events' -> 0 ->> 'eventId' = '` + evs[0].ID.String() + `'`
			require.Equal(t, row("id = $1", theirs.Job.ID), row(ours, theirs.Job.ID))
			// River stamps its rows with the client's clock, ours with the transaction's.
			for _, col := range []string{"created_at", "scheduled_at"} {
				var skew time.Duration
				require.NoError(t, b.pool.QueryRow(context.Background(), `
SELECT (extract(epoch FROM (SELECT `+col+` FROM river_job WHERE `+ours+`) - `+col+`) * 1e9)::bigint
FROM river_job WHERE id = $1`, theirs.Job.ID).Scan(&skew))
				require.Less(t, skew.Abs(), 5*time.Second, col)
			}
			if direct {
				require.Len(t, tx.scope.jobs[o], 1)
				require.Equal(t, []json.RawMessage(args.Events), tx.scope.jobs[o][0].events)
			}
		})
	}
}

// A Tx whose commit fails leaves nothing behind, neither the caller's rows nor its events, says
// so with the server's error (not "outcome unknown"), hands nothing over for publishing, and
// gives its connection back.
func TestTxFailingAtCommitWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The bad input: a queue name River's table refuses (queue_length), so the events' insert,
	// in the COMMIT's round trip, fails.
	o, err := New(b.pool, Config{Service: "test", Queue: strings.Repeat("q", 200)})
	require.NoError(t, err)
	ctx, tx := b.beginTx(t)
	ev := newEvents(t, testKey, 1)[0]
	_, err = tx.Exec(ctx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID)
	require.NoError(t, err)
	require.NoError(t, o.Write(ctx, tx, ev))
	err = tx.Commit(ctx)
	require.ErrorContains(t, err, "queue_length")
	require.NotErrorIs(t, err, ErrCommitUnknown)
	require.Nil(t, tx.scope.jobs[o], "nothing to publish")

	var effects, jobs int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&effects))
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job`).Scan(&jobs))
	require.Zero(t, effects)
	require.Zero(t, jobs)
	require.Zero(t, b.pool.Stat().AcquiredConns(), "the connection is back in the pool")
	require.ErrorIs(t, tx.Rollback(ctx), pgx.ErrTxClosed)

	// A deferred Flush that fails stops the commit the same way.
	ctx, tx = b.beginTx(t)
	_, err = tx.Exec(ctx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID)
	require.NoError(t, err)
	_, ok := Deferred(ctx, tx, "k", func() failingFlush { return failingFlush{} })
	require.True(t, ok)
	require.ErrorContains(t, tx.Commit(ctx), "division by zero")
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&effects))
	require.Zero(t, effects)
	require.Zero(t, b.pool.Stat().AcquiredConns())

	// So does a statement deferred with Exec: it runs only with the COMMIT.
	ctx, tx = b.beginTx(t)
	require.NoError(t, Exec(ctx, tx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID))
	require.NoError(t, Exec(ctx, tx, `INSERT INTO effects (event_id) VALUES ($1)`, nil), "deferred, not run yet")
	require.NoError(t, o.Write(ctx, tx, ev))
	err = tx.Commit(ctx)
	require.ErrorContains(t, err, "not-null")
	require.NotErrorIs(t, err, ErrCommitUnknown)
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&effects))
	require.Zero(t, effects)
	require.Zero(t, b.pool.Stat().AcquiredConns())
}

// Exec defers a statement to a Tx's COMMIT, and runs it at once in any other transaction.
func TestExecRunsWithTheCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	count := func() (n int) {
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&n))
		return n
	}
	ctx, tx := b.beginTx(t)
	require.NoError(t, Exec(ctx, tx, `INSERT INTO effects (event_id) VALUES (gen_random_uuid())`))
	var seen int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&seen))
	require.Zero(t, seen, "not sent before the commit")
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, count())

	plain, err := b.pool.Begin(context.Background())
	require.NoError(t, err)
	require.NoError(t, Exec(context.Background(), plain, `INSERT INTO effects (event_id) VALUES (gen_random_uuid())`))
	require.NoError(t, plain.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&seen))
	require.Equal(t, 2, seen, "run at once outside a Tx")
	require.NoError(t, plain.Rollback(context.Background()))
}

type failingFlush struct{}

func (failingFlush) Flush(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT 1/0`)
	return err
}

// A rolled-back Tx, or one whose first batch failed, gives its connection back too.
func TestTxReleasesItsConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for range 3 {
		_, tx := b.beginTx(t)
		require.NoError(t, tx.Rollback(context.Background()))
	}
	batch := &pgx.Batch{}
	batch.BeginTx(pgx.TxOptions{})
	batch.Queue(`SELECT no_such_column FROM effects`)
	_, tx, br := Begin(context.Background(), b.pool, batch)
	require.ErrorContains(t, br.Close(), "no_such_column")
	require.NoError(t, tx.Rollback(context.Background()))
	require.Zero(t, b.pool.Stat().AcquiredConns())
	var one int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT 1`).Scan(&one), "the pool's connections are usable")
}
