package dbtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
)

// A cloned database is migrated and private: what one test writes, another never sees.
func TestNewDatabaseIsMigratedAndPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, a := dbtest.NewDatabase(t, db.Store)
	_, b := dbtest.NewDatabase(t, db.Store)
	_, err := a.Exec(ctx, `INSERT INTO outbox_inbox (event_id, event_type) VALUES (gen_random_uuid(), 'x')`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.QueryRow(ctx, `SELECT count(*) FROM outbox_inbox`).Scan(&n))
	require.Zero(t, n)
	require.Equal(t, dbtest.Schema(t, a), dbtest.Schema(t, b))
}
