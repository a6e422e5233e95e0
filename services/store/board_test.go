package store

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// announced is the store order the store's newest event of type typ for the order carries, or
// nil when it carries none.
func announced(t *testing.T, pool *pgxpool.Pool, orderID, typ string) *Order {
	t.Helper()
	var raw []byte
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT event FROM outbox_events WHERE order_id = $1 AND type = $2 ORDER BY created_at DESC, position DESC LIMIT 1`,
		orderID, typ).Scan(&raw))
	var ev outbox.Event
	require.NoError(t, json.Unmarshal(raw, &ev))
	var p EventPayload
	require.NoError(t, ev.DecodePayload(&p))
	var folded lifecycle.Payload // what the lifecycle's consumers read is unchanged
	require.NoError(t, ev.DecodePayload(&folded))
	require.Equal(t, p.Payload, folded)
	if p.StoreOrder != nil {
		p.StoreOrder.ReceivedAt = p.StoreOrder.ReceivedAt.UTC()
	}
	return p.StoreOrder
}

// utc is o with its time in UTC, as events carry it, to compare with what they carry.
func utc(o Order) Order {
	o.ReceivedAt = o.ReceivedAt.UTC()
	return o
}

// Every change of a store order goes up one version, in the statement that makes it, and the
// store's event about it carries the row as that change left it: what a live board is pushed.
func TestStoreOrderVersionsTravelWithTheEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, apply := newCancelWorld(t)

	apply(placed(t, "1", "강남구"))
	got := announced(t, pool, "1", lifecycle.StoreOrderReceived)
	require.NotNil(t, got)
	require.Equal(t, Order{OrderID: "1", StoreID: "1", Pizza: "p", Qty: 1, Status: lifecycle.Received,
		ReceivedAt: got.ReceivedAt, Version: 1}, *got)
	row, err := s.Order(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, *got, utc(row), "the event carries the row as stored")

	cooked, err := s.MarkCooked(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, int64(2), cooked.Version)
	require.Equal(t, utc(cooked), *announced(t, pool, "1", lifecycle.StoreOrderCooked))
	again, err := s.MarkCooked(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, cooked, again, "cooking twice changes nothing, the version included")

	apply(placed(t, "2", "강남구"))
	_, err = s.Cancel(ctx, "2")
	require.NoError(t, err)
	c := announced(t, pool, "2", lifecycle.StoreOrderCancelled)
	require.Equal(t, lifecycle.Cancelled, c.Status)
	require.Equal(t, int64(2), c.Version)
	row, err = s.Order(ctx, "2")
	require.NoError(t, err)
	require.Equal(t, *c, utc(row))

	// A cancel the order service announced before asking (an earlier version) wins over a cook.
	apply(placed(t, "3", "강남구"))
	_, err = s.MarkCooked(ctx, "3")
	require.NoError(t, err)
	apply(cancelled(t, "3"))
	c = announced(t, pool, "3", lifecycle.StoreOrderCancelled)
	require.Equal(t, lifecycle.Cancelled, c.Status)
	require.Equal(t, int64(3), c.Version)

	// No store has a rejected order or a cancellation's stand-in: nothing for a board.
	apply(placed(t, "4", "제주시"))
	require.Nil(t, announced(t, pool, "4", lifecycle.StoreOrderRejected))
	_, err = s.Cancel(ctx, "5")
	require.NoError(t, err)
	require.Nil(t, announced(t, pool, "5", lifecycle.StoreOrderCancelled))
	requireCountersMatch(t, pool)
}

// A board starts from the store's unfinished orders, however old, and the ones that changed in
// the last day, oldest first; another store's, and a finished order not touched for a day, are
// not on it.
func TestBoardIsTheUnfinishedAndTheRecent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, apply := newCancelWorld(t)
	other, err := s.Register(ctx, RegisterInput{Name: "종로점", Region: "종로구", Open: new(true)})
	require.NoError(t, err)
	for _, id := range []string{"1", "2", "3", "4"} {
		apply(placed(t, id, "강남구"))
	}
	apply(placed(t, "5", "종로구"))
	_, err = s.MarkCooked(ctx, "1")
	require.NoError(t, err)
	_, err = s.MarkCooked(ctx, "2")
	require.NoError(t, err)
	_, err = s.Cancel(ctx, "3")
	require.NoError(t, err)
	// Order 2 was cooked two days ago; order 4 was received two days ago and is still waiting.
	_, err = pool.Exec(ctx, `UPDATE store_orders SET updated_at = now() - interval '2 days', received_at = now() - interval '2 days' WHERE order_id IN ('2', '4')`)
	require.NoError(t, err)

	board, err := s.Board(ctx, 1)
	require.NoError(t, err)
	var ids []string
	for _, o := range board {
		ids = append(ids, o.OrderID+" "+string(o.Status))
	}
	require.Equal(t, []string{"4 RECEIVED", "1 COOKED", "3 CANCELLED"}, ids)

	board, err = s.Board(ctx, mustID(t, other.ID))
	require.NoError(t, err)
	require.Len(t, board, 1)
	require.Equal(t, "5", board[0].OrderID)

	empty, err := s.Register(ctx, RegisterInput{Name: "빈점", Region: "중구", Open: new(true)})
	require.NoError(t, err)
	board, err = s.Board(ctx, mustID(t, empty.ID))
	require.NoError(t, err)
	require.NotNil(t, board, "a store with nothing on its board answers [], not null")
	require.Empty(t, board)

	_, err = s.Board(ctx, 99)
	require.Equal(t, errs.NotFound, errs.CodeOf(err))
}

// The board's replay reads through indexes (the recent orders through their own, not the store's
// whole history), however big that history grows.
func TestBoardReadsThroughIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewOneConnPool(t, db.Store)
	ob, err := outbox.New(pool, outbox.Config{Service: "store"})
	require.NoError(t, err)
	s := New(pool, ob)
	for _, name := range []string{"강남점", "역삼점"} {
		_, err := s.Register(ctx, RegisterInput{Name: name, Region: "강남구", Open: new(true)})
		require.NoError(t, err)
	}
	// A long history: 20,000 finished orders over the last months, spread over both stores.
	_, err = pool.Exec(ctx, `
INSERT INTO store_orders (order_id, store_id, pizza, qty, region, status, received_at, updated_at)
SELECT n::text, 1 + n % 2, 'p', 1, '강남구', 'COOKED', now() - (n - 1000) * interval '10 minutes', now() - (n - 1000) * interval '10 minutes'
FROM generate_series(1000, 21000) n`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `ANALYZE store_orders`)
	require.NoError(t, err)
	for range 8 { // past where PostgreSQL settles on a generic plan
		before, recent := dbtest.SeqScans(t, pool, "store_orders"), dbtest.IndexScans(t, pool, "store_orders_board")
		board, err := s.Board(ctx, 1)
		require.NoError(t, err)
		require.NotEmpty(t, board)
		require.Less(t, len(board), 200, "a day of orders, not the history")
		require.Zero(t, dbtest.SeqScans(t, pool, "store_orders")-before, "the board read the whole table")
		require.Positive(t, dbtest.IndexScans(t, pool, "store_orders_board")-recent, "the recent orders are found by their index")
	}
}

func mustID(t *testing.T, s string) int64 {
	t.Helper()
	id, err := input.ParseID(s)
	require.NoError(t, err)
	return id
}

// A store's orders, by status or all, oldest first, in one statement: an unknown store is
// NOT_FOUND and a store with none answers [], not null.
func TestOrdersOfAStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, apply := newCancelWorld(t)
	for _, id := range []string{"1", "2", "3"} {
		apply(placed(t, id, "강남구"))
	}
	_, err := s.MarkCooked(ctx, "2")
	require.NoError(t, err)

	ids := func(orders []Order) (out []string) {
		for _, o := range orders {
			out = append(out, o.OrderID+" "+string(o.Status))
		}
		return out
	}
	all, err := s.Orders(ctx, 1, "")
	require.NoError(t, err)
	require.Equal(t, []string{"1 RECEIVED", "2 COOKED", "3 RECEIVED"}, ids(all))
	received, err := s.Orders(ctx, 1, lifecycle.Received)
	require.NoError(t, err)
	require.Equal(t, []string{"1 RECEIVED", "3 RECEIVED"}, ids(received))

	none, err := s.Orders(ctx, 1, lifecycle.Cancelled)
	require.NoError(t, err)
	require.NotNil(t, none, "[], not null")
	require.Empty(t, none)

	_, err = s.Orders(ctx, 99, "")
	require.Equal(t, errs.NotFound, errs.CodeOf(err))
	_, err = s.Orders(ctx, 1, "BAKED")
	require.Equal(t, errs.BadUserInput, errs.CodeOf(err))
}
