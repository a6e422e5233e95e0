package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox"
)

// A service whose readiness passes is ready in GET /status even when a number /status reads
// cannot be read (here: its database has no outbox tables): /status and /readyz never disagree,
// and what could not be read is said in error.
func TestStatusIsReadyWhenReadyzIs(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), dbtest.ServerURL()) // the server's own database: no outbox tables
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ob, err := outbox.New(pool, outbox.Config{Service: "order"})
	require.NoError(t, err)
	st := serviceStatus{
		name:     "order",
		ready:    func(context.Context) error { return nil },
		outbox:   ob,
		consumer: outbox.NewConsumer(pool, outbox.ConsumerConfig{}, nil),
		dead:     outbox.NewDeadLetters(pool, outbox.DeadLetterConfig{Service: "order"}),
	}
	got := st.read(context.Background())
	require.True(t, got.Ready, "readiness passed: %+v", got)
	require.Contains(t, got.Error, "outbox backlog")
}
