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
			opts := &river.InsertOpts{Queue: defaultQueue, MaxAttempts: math.MaxInt16}
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
	o.cfg.DirectPublish = true // as with a Publisher: jobs would be handed over after a commit
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

	// So does a statement deferred with ExecAtCommit: it runs only with the COMMIT.
	ctx, tx = b.beginTx(t)
	require.NoError(t, ExecAtCommit(ctx, tx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID))
	require.NoError(t, ExecAtCommit(ctx, tx, `INSERT INTO effects (event_id) VALUES ($1)`, nil), "deferred, not run yet")
	require.NoError(t, o.Write(ctx, tx, ev))
	err = tx.Commit(ctx)
	require.ErrorContains(t, err, "not-null")
	require.NotErrorIs(t, err, ErrCommitUnknown)
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&effects))
	require.Zero(t, effects)
	require.Zero(t, b.pool.Stat().AcquiredConns())
}

// Exec defers a statement to a Tx's COMMIT, yet the transaction reads what it deferred: a
// statement run on the Tx sends the deferred ones first (in the same round trip, for a batch).
// In any other transaction Exec runs at once.
func TestExecRunsWithTheCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	count := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) (n int) {
		require.NoError(t, q.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&n))
		return n
	}
	const insert = `INSERT INTO effects (event_id) VALUES (gen_random_uuid())`
	ctx, tx := b.beginTx(t)
	require.NoError(t, ExecAtCommit(ctx, tx, insert))
	require.Len(t, tx.scope.execs, 1, "deferred")
	require.Equal(t, 1, count(tx), "a query in the Tx sees it")
	require.Empty(t, tx.scope.execs)

	require.NoError(t, ExecAtCommit(ctx, tx, insert))
	sp, err := tx.Begin(ctx) // a savepoint sees it too
	require.NoError(t, err)
	require.Equal(t, 2, count(sp))
	require.NoError(t, sp.Commit(ctx))

	require.NoError(t, ExecAtCommit(ctx, tx, insert))
	batch := &pgx.Batch{}
	batch.Queue(`SELECT count(*) FROM effects`)
	br := tx.SendBatch(ctx, batch)
	var n int
	require.NoError(t, br.QueryRow().Scan(&n))
	require.NoError(t, br.Close())
	require.Equal(t, 3, n, "a batch in the Tx sees it, its own results first")

	// Deferred statements are planned for their arguments (prepared in a batch, they would
	// otherwise settle on generic plans): this one inserts only under force_custom_plan.
	require.NoError(t, ExecAtCommit(ctx, tx, `INSERT INTO effects (event_id)
SELECT gen_random_uuid() WHERE current_setting('plan_cache_mode') = 'force_custom_plan'`))
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 4, count(b.pool))
	_, err = tx.Exec(ctx, `SELECT 1`)
	require.ErrorIs(t, err, pgx.ErrTxClosed, "a Tx is not used after its commit")

	plain, err := b.pool.Begin(context.Background())
	require.NoError(t, err)
	require.NoError(t, ExecAtCommit(context.Background(), plain, insert))
	require.Equal(t, 5, count(plain), "run at once outside a Tx")
	require.NoError(t, plain.Rollback(context.Background()))
}

// A COMMIT that the server refuses (a deferred constraint) is a failure with its server error,
// not an unknown outcome: nothing was written.
func TestTxWhoseCommitIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(context.Background(), `CREATE TABLE once (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)`)
	require.NoError(t, err)
	o, err := New(b.pool, Config{Service: "test"})
	require.NoError(t, err)
	o.cfg.DirectPublish = true
	ctx, tx := b.beginTx(t)
	require.NoError(t, ExecAtCommit(ctx, tx, `INSERT INTO once VALUES (1), (1)`))
	require.NoError(t, o.Write(ctx, tx, newEvents(t, testKey, 1)...))
	err = tx.Commit(ctx)
	require.ErrorContains(t, err, "once_k_key")
	require.NotErrorIs(t, err, ErrCommitUnknown)
	var rows, jobs int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM once`).Scan(&rows))
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job`).Scan(&jobs))
	require.Zero(t, rows)
	require.Zero(t, jobs)
	require.Zero(t, b.pool.Stat().AcquiredConns())
}

// More events than one relay job holds are several jobs, and each job handed to the dispatchers
// carries exactly the events of the row with its id.
func TestTxSplitsManyEventsIntoJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o, err := New(b.pool, Config{Service: "test", DirectGrace: time.Minute})
	require.NoError(t, err)
	o.cfg.DirectPublish = true
	ctx, tx := b.beginTx(t)
	evs := newEvents(t, testKey, 2*maxEventsPerJob+10)
	require.NoError(t, o.Write(ctx, tx, evs...))
	require.NoError(t, tx.commit(ctx))
	jobs := tx.scope.jobs[o]
	require.Len(t, jobs, 3)
	seen := 0
	for _, j := range jobs {
		var n int
		var first string
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT jsonb_array_length(args -> 'events'), args -> 'events' -> 0 ->> 'eventId' FROM river_job WHERE id = $1`, j.id).Scan(&n, &first))
		require.Equal(t, len(j.events), n, "job %d", j.id)
		require.Equal(t, evs[seen].ID.String(), first, "job %d starts where the one before ended", j.id)
		require.Equal(t, evs[seen].ID, j.heads[0].ID)
		seen += n
	}
	require.Equal(t, len(evs), seen)
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

// A relay job is stamped when its transaction commits, not when it began: of two transactions,
// the one that began first and committed second wrote the later job (the order timeline lists
// events by that time).
func TestTxStampsJobsAtCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o, err := New(b.pool, Config{Service: "test"})
	require.NoError(t, err)
	ctx1, first := b.beginTx(t)
	ctx2, second := b.beginTx(t)
	evs := newEvents(t, testKey, 2)
	require.NoError(t, o.Write(ctx2, second, evs[1]))
	require.NoError(t, second.commit(ctx2))
	require.NoError(t, o.Write(ctx1, first, evs[0]))
	require.NoError(t, first.commit(ctx1))
	var later bool
	require.NoError(t, b.pool.QueryRow(context.Background(), `
SELECT (SELECT created_at FROM river_job WHERE args -> 'events' -> 0 ->> 'eventId' = $1) >
	(SELECT created_at FROM river_job WHERE args -> 'events' -> 0 ->> 'eventId' = $2)`,
		evs[0].ID.String(), evs[1].ID.String()).Scan(&later))
	require.True(t, later, "the job committed last is the later one")
}
