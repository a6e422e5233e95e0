package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tx is a transaction whose outbox writes are deferred to its commit (every consumer
// transaction, order placements, InTx): Write in its context inserts nothing until Commit, which
// runs the work deferred with Deferred, then sends the statements deferred with ExecAtCommit, the
// inserts of the events written and the COMMIT in one round trip, and has the events published
// once committed (directly, with DirectPublish, or by waking the relay). Commit and Rollback
// release the connection; the Tx must not be used after either.
//
// pgx commits a transaction with a round trip of its own, after whatever was sent before it, so
// a Tx holds its pool connection itself and sends the COMMIT at the end of its last batch: one
// round trip fewer for every transaction that writes events.
type Tx struct {
	pgx.Tx               // the transaction the BEGIN started on conn
	conn   *pgxpool.Conn // nil once committed or rolled back
	scope  *txScope
}

// customPlan plans a statement with its arguments on every run, as db.CustomPlan does for the
// services: the outbox's own statements read river_job and the inbox, which start empty and grow.
const customPlan = pgx.QueryExecModeCacheDescribe

// customPlans is db.CustomPlans, for statements sent in a batch.
const customPlans = `SET LOCAL plan_cache_mode = force_custom_plan`

// ErrCommitUnknown reports that the connection failed while the COMMIT was in flight: the
// transaction may or may not have committed.
var ErrCommitUnknown = errors.New("outbox: connection lost while committing; the outcome is unknown")

// Begin acquires a connection from pool and sends b on it, which must begin with the transaction
// (pgx.Batch.BeginTx): the BEGIN goes out with the transaction's first statements. The results
// are read as usual, starting with the BEGIN's, and must be closed before tx is used; ctx
// carries tx's scope for Write and Deferred. When the batch fails, tx.Rollback releases the
// connection (it is always safe to defer).
func Begin(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) (sctx context.Context, tx *Tx, br pgx.BatchResults) {
	tx = &Tx{}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		br = pgx.FailedBatchResults(b, err)
		tx.Tx = br.Tx()
		return ctx, tx, br
	}
	br = conn.SendBatch(ctx, b)
	tx.Tx, tx.conn = br.Tx(), conn
	if tx.Tx == nil {
		_ = br.Close()
		conn.Release()
		panic("outbox.Begin: the batch must begin a transaction (pgx.Batch.BeginTx)")
	}
	sctx, tx.scope = withScope(ctx, tx)
	return sctx, tx, br
}

// Commit does the deferred work and commits, the events' inserts in the COMMIT's round trip, and
// releases the connection; then the events are published. An error means nothing was committed,
// unless errors.Is(err, ErrCommitUnknown).
func (t *Tx) Commit(ctx context.Context) error {
	if err := t.commit(ctx); err != nil {
		return err
	}
	t.scope.committed()
	return nil
}

// commit is Commit without handing the events over for publishing (a test stops there, as a
// process that died just after its commit would).
func (t *Tx) commit(ctx context.Context) error {
	if t.conn == nil {
		return pgx.ErrTxClosed
	}
	defer t.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // releases the connection
	s := t.scope
	ctx = context.WithValue(ctx, scopeKey{}, s) // a Flush may Exec: into this batch
	for _, k := range s.keys {
		if err := s.values[k].Flush(ctx, t); err != nil {
			return err
		}
	}
	b := t.pending() // the statements deferred with ExecAtCommit first
	if b == nil {
		b = &pgx.Batch{}
	}
	for _, o := range s.writers {
		err := o.queueInsert(b, s.writes[o], o.cfg.DirectPublish, func(jobs []directJob) {
			if s.jobs == nil {
				s.jobs = map[*Outbox][]directJob{}
			}
			s.jobs[o] = jobs
		})
		if err != nil {
			return err
		}
	}
	committed := false // the server answered the COMMIT with COMMIT
	b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		if tag.String() == "ROLLBACK" { // the transaction had failed before
			return pgx.ErrTxCommitRollback
		}
		committed = true
		return nil
	})
	err := t.Tx.SendBatch(ctx, b).Close()
	if err == nil || committed {
		return nil // committed, even if the connection broke after the answer
	}
	// Whether the COMMIT ran: nothing sent leaves the transaction open ('T'), a failed statement
	// before the COMMIT leaves it failed ('E'), and a failed COMMIT ends it with a server error
	// ('I'). Anything else (the connection broke before the COMMIT's answer was read) leaves the
	// outcome unknown.
	pc := t.conn.Conn().PgConn()
	var pgErr *pgconn.PgError
	switch {
	case pgconn.SafeToRetry(err):
		return err
	case pc.IsClosed():
	case pc.TxStatus() == 'E', pc.TxStatus() == 'T':
		return err
	case pc.TxStatus() == 'I' && (errors.As(err, &pgErr) || errors.Is(err, pgx.ErrTxCommitRollback)):
		return err
	}
	return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
}

// Rollback rolls back what is not committed and releases the connection; after Commit it does
// nothing.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.conn == nil {
		return pgx.ErrTxClosed
	}
	conn := t.conn
	t.conn = nil
	var err error
	if conn.Conn().PgConn().TxStatus() != 'I' { // a failed COMMIT batch leaves it 'E'
		err = t.Tx.Rollback(ctx)
	}
	conn.Release() // a connection left in a transaction is closed, not pooled
	return err
}

// Statements run on a Tx see what it deferred with ExecAtCommit: those go out first, in the same round
// trip where the statement is a batch, so that deferring changes when a statement is sent, never
// what the transaction reads. After Commit or Rollback they fail with pgx.ErrTxClosed. (Conn
// gives the bare connection, which knows nothing of what was deferred.)

// pending returns a batch of the statements deferred so far (nil if none), and forgets them.
func (t *Tx) pending() *pgx.Batch {
	if len(t.scope.execs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(customPlans) // prepared in the batch, they are planned for their arguments all the same
	b.QueuedQueries = append(b.QueuedQueries, t.scope.execs...)
	t.scope.execs = nil
	return b
}

// ready sends the deferred statements, if any, before a statement of the caller's.
func (t *Tx) ready(ctx context.Context) error {
	if t.conn == nil {
		return pgx.ErrTxClosed
	}
	if b := t.pending(); b != nil {
		return t.Tx.SendBatch(ctx, b).Close()
	}
	return nil
}

// Begin starts a savepoint (pgx's pseudo-nested transaction), after the deferred statements.
func (t *Tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.ready(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.ready(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.Tx.Exec(ctx, sql, args...)
}

func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.ready(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.ready(ctx); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t *Tx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.ready(ctx); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, columns, src)
}

// SendBatch sends b, after the deferred statements (in the same round trip).
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.conn == nil {
		return pgx.FailedBatchResults(b, pgx.ErrTxClosed)
	}
	first := t.pending()
	if first == nil {
		return t.Tx.SendBatch(ctx, b)
	}
	n := len(first.QueuedQueries)
	first.QueuedQueries = append(first.QueuedQueries, b.QueuedQueries...)
	return &skipResults{BatchResults: t.Tx.SendBatch(ctx, first), skip: n}
}

// skipResults reads past the deferred statements' results before the caller's first.
type skipResults struct {
	pgx.BatchResults
	skip int
	err  error
}

func (r *skipResults) skipped() error {
	for ; r.skip > 0 && r.err == nil; r.skip-- {
		_, r.err = r.BatchResults.Exec()
	}
	return r.err
}

func (r *skipResults) Exec() (pgconn.CommandTag, error) {
	if err := r.skipped(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return r.BatchResults.Exec()
}

func (r *skipResults) Query() (pgx.Rows, error) {
	if err := r.skipped(); err != nil {
		return nil, err
	}
	return r.BatchResults.Query()
}

func (r *skipResults) QueryRow() pgx.Row {
	if err := r.skipped(); err != nil {
		return errRow{err}
	}
	return r.BatchResults.QueryRow()
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// InTx runs fn in a Tx: what fn writes to an outbox (with the ctx it is given) is inserted with
// the COMMIT, and published once the transaction committed. fn's error rolls back.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	ctx, tx, br := Begin(ctx, pool, b)
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := br.Close(); err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// A consumer transaction applies a batch of events, one handler call each. Work that every
// handler call would repeat is deferred to the end of the transaction (Tx.Commit) and done once,
// set-based: the events the handlers write (one insert for all of them, sent with the COMMIT),
// and whatever a service defers with Deferred (the store service's load counters). Deferring
// also fixes the order in which such rows are locked, so concurrent batches cannot deadlock on
// them.

// Flusher is work deferred to the end of a consumer transaction.
type Flusher interface {
	Flush(ctx context.Context, tx pgx.Tx) error
}

type scopeKey struct{}

// txScope is what one Tx deferred, in the order it was first deferred.
type txScope struct {
	tx      *Tx
	writes  map[*Outbox][]Event
	writers []*Outbox
	values  map[any]Flusher
	keys    []any
	jobs    map[*Outbox][]directJob // written for direct publishing, once committed
	execs   []*pgx.QueuedQuery      // sent with the COMMIT (ExecAtCommit)
}

// withScope returns ctx carrying a fresh scope for tx.
func withScope(ctx context.Context, tx *Tx) (context.Context, *txScope) {
	s := &txScope{tx: tx}
	return context.WithValue(ctx, scopeKey{}, s), s
}

// scopeOf returns the scope of tx in ctx, or nil when tx is not a Tx (a request's own
// transaction).
func scopeOf(ctx context.Context, tx pgx.Tx) *txScope {
	s, _ := ctx.Value(scopeKey{}).(*txScope)
	if s == nil || s.tx == nil || pgx.Tx(s.tx) != tx {
		return nil
	}
	return s
}

// Deferred returns the value kept under key for the rest of the consumer transaction tx, making
// it with mk the first time; its Flush runs once, after the transaction's last handler and
// before its commit (values in the order they were made, then the events written). ok is false
// when tx is not a consumer transaction (a request's own transaction): do the work at once.
func Deferred[T Flusher](ctx context.Context, tx pgx.Tx, key any, mk func() T) (v T, ok bool) {
	s := scopeOf(ctx, tx)
	if s == nil {
		return v, false
	}
	if have, found := s.values[key]; found {
		return have.(T), true
	}
	v = mk()
	if s.values == nil {
		s.values = make(map[any]Flusher)
	}
	s.values[key] = v
	s.keys = append(s.keys, key)
	return v, true
}

// ExecAtCommit defers a statement whose outcome the transaction tx needs no sooner than its
// commit (an UPDATE that writes back what the handlers folded): in a Tx it runs at COMMIT, sent
// in the COMMIT's round trip after the Flushers and before the events' inserts, in the order
// ExecAtCommit was called, planned with its arguments as db.CustomPlan would; its failure fails
// the Commit, and nothing is written. In any other transaction it runs at once. (Tx.Exec, by
// contrast, always runs at once.)
func ExecAtCommit(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	s := scopeOf(ctx, tx)
	if s == nil {
		_, err := tx.Exec(ctx, sql, append([]any{customPlan}, args...)...)
		return err
	}
	s.execs = append(s.execs, &pgx.QueuedQuery{SQL: sql, Arguments: args})
	return nil
}

// deferWrite keeps events for the one insert at flush.
func (s *txScope) deferWrite(o *Outbox, events []Event) {
	if s.writes == nil {
		s.writes = make(map[*Outbox][]Event)
	}
	if _, seen := s.writes[o]; !seen {
		s.writers = append(s.writers, o)
	}
	s.writes[o] = append(s.writes[o], events...)
}

// committed publishes what the transaction wrote, now that it committed: directly, or by
// waking the relay.
func (s *txScope) committed() {
	for _, o := range s.writers {
		if jobs, ok := s.jobs[o]; ok {
			o.dispatch(jobs)
		} else {
			o.wake()
		}
	}
}
