package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// A consumer transaction applies a batch of events, one handler call each. Work that every
// handler call would repeat is deferred to the end of the transaction and done once, set-based:
// the events the handlers write (one River insert for all of them), and whatever a service
// defers with Deferred (the store service's load counters). Deferring also fixes the order in
// which such rows are locked, so concurrent batches cannot deadlock on them.

// Flusher is work deferred to the end of a consumer transaction.
type Flusher interface {
	Flush(ctx context.Context, tx pgx.Tx) error
}

type scopeKey struct{}

// txScope is what one consumer transaction deferred, in the order it was first deferred.
type txScope struct {
	tx      pgx.Tx
	writes  map[*Outbox][]Event
	writers []*Outbox
	values  map[any]Flusher
	keys    []any
	jobs    map[*Outbox][]directJob // written for direct publishing, once committed
}

// withScope returns ctx carrying a fresh scope for tx.
func withScope(ctx context.Context, tx pgx.Tx) (context.Context, *txScope) {
	s := &txScope{tx: tx}
	return context.WithValue(ctx, scopeKey{}, s), s
}

// scopeOf returns the scope of tx in ctx, or nil when tx is not a consumer transaction.
func scopeOf(ctx context.Context, tx pgx.Tx) *txScope {
	s, _ := ctx.Value(scopeKey{}).(*txScope)
	if s == nil || s.tx != tx {
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

// flush does the deferred work in tx.
func (s *txScope) flush(ctx context.Context) error {
	for _, k := range s.keys {
		if err := s.values[k].Flush(ctx, s.tx); err != nil {
			return err
		}
	}
	for _, o := range s.writers {
		jobs, err := o.insert(ctx, s.tx, s.writes[o], o.cfg.DirectPublish)
		if err != nil {
			return fmt.Errorf("outbox: write %d events: %w", len(s.writes[o]), err)
		}
		if len(jobs) > 0 {
			if s.jobs == nil {
				s.jobs = map[*Outbox][]directJob{}
			}
			s.jobs[o] = jobs
		}
	}
	return nil
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

// Scope defers a transaction's outbox writes to its end, as a consumer transaction does: Write
// in its context inserts nothing until Flush, which the caller runs last before the commit, and
// Committed, after the commit, has the events published (directly, with DirectPublish). A
// transaction that fails simply never calls Committed.
type Scope struct{ s *txScope }

// NewScope returns ctx carrying a fresh scope for tx.
func NewScope(ctx context.Context, tx pgx.Tx) (context.Context, *Scope) {
	ctx, s := withScope(ctx, tx)
	return ctx, &Scope{s}
}

// Flush does the deferred work (ctx is the scope's).
func (sc *Scope) Flush(ctx context.Context) error { return sc.s.flush(ctx) }

// Committed has the events published; call it once the transaction committed.
func (sc *Scope) Committed() { sc.s.committed() }

// InTx runs fn in a transaction with a scope: what fn writes to an outbox (with the ctx it is
// given) is inserted at the end, and published once the transaction committed.
func InTx(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	return inScopeTx(ctx, tx, fn)
}

// inScopeTx is InTx in a transaction already begun (pipelined with its first statement, as
// consumers do), which it commits, or rolls back when anything fails.
func inScopeTx(ctx context.Context, tx pgx.Tx, fn func(ctx context.Context, tx pgx.Tx) error) error {
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	sctx, s := withScope(ctx, tx)
	if err := fn(sctx, tx); err != nil {
		return err
	}
	if err := s.flush(sctx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.committed()
	return nil
}
