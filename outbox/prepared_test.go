package outbox

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// countingConn counts the writes a connection makes: one per round trip pgx starts.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// A prepared consumer's statements go out with the transaction's BEGIN and inbox insert: they
// see every event of the transaction, those applied before too, the handler then applies only
// the fresh ones with their results read, and a transaction whose handler writes back with ExecAtCommit
// is two round trips (the BEGIN's batch, the COMMIT's).
func TestPreparedConsumerSendsItsStatementsWithTheBegin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var writes atomic.Int64
	pc, err := pgxpool.ParseConfig(b.dbURL)
	require.NoError(t, err)
	pc.MaxConns = 1
	pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return countingConn{Conn: c, writes: &writes}, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	var (
		preparedFor, appliedTo []uuid.UUID
		seenBefore             int
	)
	c := NewConsumer(pool, b.consumerConfig(nil), func(batch *pgx.Batch, events []Event) BatchHandler {
		for _, ev := range events {
			preparedFor = append(preparedFor, ev.ID)
		}
		batch.Queue(`SELECT count(*) FROM effects`).QueryRow(func(r pgx.Row) error { return r.Scan(&seenBefore) })
		return func(ctx context.Context, tx pgx.Tx, fresh []Event) error {
			for _, ev := range fresh {
				appliedTo = append(appliedTo, ev.ID)
				// Written with the COMMIT, as the services write back.
				if err := ExecAtCommit(ctx, tx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID); err != nil {
					return err
				}
			}
			return nil
		}
	})
	evs := newEvents(t, testKey, 4)
	dup, err := c.applyInTx(ctx, evs[:1])
	require.NoError(t, err)
	require.Equal(t, []bool{false}, dup)
	require.NoError(t, pool.QueryRow(ctx, `SELECT 1`).Scan(new(int))) // warm: statements prepared once per connection

	preparedFor, appliedTo = nil, nil
	writes.Store(0)
	dup, err = c.applyInTx(ctx, evs[:3])
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, false}, dup)
	require.Equal(t, []uuid.UUID{evs[0].ID, evs[1].ID, evs[2].ID}, preparedFor, "prepared for every event")
	require.Equal(t, []uuid.UUID{evs[1].ID, evs[2].ID}, appliedTo, "applied the fresh ones")
	require.Equal(t, 1, seenBefore, "the prepared read ran in the transaction, before the handler")
	writes.Store(0)
	_, err = c.applyInTx(ctx, evs[3:])
	require.NoError(t, err)
	require.Equal(t, int64(2), writes.Load(), "round trips of a warm consumer transaction")
	var effects int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&effects))
	require.Equal(t, 4, effects)
}
