package outboxtest

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Apply applies events in tx as a consumer transaction does, through a service's one consumer
// entry point (its Consume method, an outbox.BatchPreparer): what consume queues is sent on tx,
// then the handler it returns applies the events, every one of them taken as fresh. In an
// outbox.Tx (outbox.InTx) the work it defers runs at the commit, as in a consumer; in a plain
// pgx.Tx it runs at once. (Generic only so that this package need not import outbox, whose own
// tests import it.)
func Apply[E any, H ~func(context.Context, pgx.Tx, []E) error](ctx context.Context, tx pgx.Tx, consume func(*pgx.Batch, []E) H, events ...E) error {
	b := &pgx.Batch{}
	apply := consume(b, events)
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	return apply(ctx, tx, events)
}
