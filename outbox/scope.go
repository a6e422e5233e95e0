package outbox

import (
	"context"

	"github.com/jackc/pgx/v5"
)

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
	execs   []*pgx.QueuedQuery      // sent with the COMMIT (Exec)
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

// Exec runs a statement whose outcome the transaction tx needs no sooner than its commit (an
// UPDATE that writes back what the handlers folded). In a Tx it goes out with the COMMIT, after
// the Flushers and before the events' inserts, in the order Exec was called, planned with its
// arguments as db.CustomPlan would; its failure fails the Commit, and nothing is written.
// Elsewhere it runs at once.
func Exec(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
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
			o.Wake()
		}
	}
}
