package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
)

const boardSubscription = `subscription($s: ID!, $seen: [SeenVersion!]) {
	storeOrders(storeId: $s, seen: $seen) { id orderId storeId pizza qty status receivedAt version }
}`

type boardRow struct {
	ID, OrderID, StoreID, Pizza, Status string
	Qty, Version                        int
	ReceivedAt                          time.Time
}

// boardWatch is one storeOrders subscription, remembering every store order it was pushed.
type boardWatch struct {
	ws     *wsConn
	pushed map[string][]int // versions by order, in the order pushed
}

func watchBoard(t *testing.T, base, tok, storeID string, seen []map[string]any) *boardWatch {
	t.Helper()
	ws := connect(t, base, tok)
	vars := map[string]any{"s": storeID}
	if seen != nil {
		vars["seen"] = seen
	}
	ws.subscribe(t, "board", boardSubscription, vars)
	return &boardWatch{ws: ws, pushed: map[string][]int{}}
}

// next reads the next pushed store order. Each order's versions only ever increase on one
// subscription: a version is never pushed twice.
func (b *boardWatch) next(t *testing.T) boardRow {
	t.Helper()
	r := pushed[boardRow](t, b.ws, "storeOrders")
	require.Equal(t, r.OrderID, r.ID, "a pushed store order's cache key is its order's id")
	if vs := b.pushed[r.OrderID]; len(vs) > 0 {
		require.Greater(t, r.Version, vs[len(vs)-1], "order %s pushed again at version %d after %v", r.OrderID, r.Version, vs)
	}
	b.pushed[r.OrderID] = append(b.pushed[r.OrderID], r.Version)
	return r
}

// waitSubscribers waits until the BFF at base counts n live subscriptions.
func waitSubscribers(t *testing.T, base string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, body := get(t, opsOf(t, base)+"/metrics")
		return strings.Contains(body, fmt.Sprintf("pizza_bff_subscribers %d\n", n))
	}, 20*time.Second, 10*time.Millisecond, "the BFF never counted %d subscriptions", n)
}

// refused reads the error a subscription was refused with at its start (as gqlgen answers a
// resolver's error: a next with errors and no data, then complete), and returns its code.
func refused(t *testing.T, ws *wsConn) string {
	t.Helper()
	m := ws.next(t, 15*time.Second)
	require.Equal(t, "next", m.Type, "payload: %s", m.Payload)
	var p struct {
		Data   json.RawMessage
		Errors []gqlError
	}
	require.NoError(t, json.Unmarshal(m.Payload, &p))
	require.Equal(t, "null", string(p.Data), "no store order: %s", m.Payload)
	require.Len(t, p.Errors, 1)
	require.Equal(t, "complete", ws.next(t, 15*time.Second).Type)
	return p.Errors[0].Extensions.Code
}

// The store's board, live, for its master: a new order appears RECEIVED, then COOKED once the
// master cooks it, CANCELLED once its customer cancels; a board that reconnects with what it saw
// is replayed only what is newer; an event heard twice is not pushed twice; a master of another
// store is refused, at the subscription and at the query; an unknown store is NOT_FOUND.
func TestStoreBoardIsLive(t *testing.T) {
	t.Parallel()
	sys, base := wholeSystem(t, nil)
	storeID := registerStore(t, base, "강남점", "강남구")
	otherStore := registerStore(t, base, "서초점", "서초구")
	master := mint(t, model.RoleMaster, storeID)
	customer := mint(t, model.RoleCustomer, "1")
	admin := mint(t, model.RoleAdmin, "")

	board := watchBoard(t, base, master, storeID, []map[string]any{}) // an empty store: nothing to replay
	o1 := placed(t, base, customer, "1", "강남구")
	r := board.next(t)
	require.Equal(t, boardRow{ID: o1.ID, OrderID: o1.ID, StoreID: storeID, Pizza: "하와이안피자", Qty: 1, Status: "RECEIVED",
		Version: 1, ReceivedAt: r.ReceivedAt}, r)
	require.WithinDuration(t, time.Now(), r.ReceivedAt, time.Minute)

	gql(t, base, master, cookMutation, map[string]any{"id": o1.ID}).decode(t, "markCooked", new(struct{}))
	r = board.next(t)
	require.Equal(t, []any{o1.ID, "COOKED", 2}, []any{r.OrderID, r.Status, r.Version})

	o2 := placed(t, base, customer, "1", "강남구")
	r = board.next(t)
	require.Equal(t, []any{o2.ID, "RECEIVED", 1}, []any{r.OrderID, r.Status, r.Version})
	gql(t, base, customer, cancelMutation, map[string]any{"id": o2.ID}).decode(t, "cancelOrder", new(struct{}))
	r = board.next(t)
	require.Equal(t, []any{o2.ID, "CANCELLED", 2}, []any{r.OrderID, r.Status, r.Version})

	// Another store's order never reaches this board: the next push is this store's next order.
	placed(t, base, customer, "1", "서초구")
	o3 := placed(t, base, customer, "1", "강남구")
	r = board.next(t)
	require.Equal(t, []any{o3.ID, "RECEIVED"}, []any{r.OrderID, r.Status})

	// The board drops; meanwhile order 3 is cooked and order 4 arrives. An admin, who may watch
	// any store, subscribed without seen: only what changes from then on (not orders 1 to 3 as
	// they are), and once it has both changes, this BFF has heard them.
	board.ws.close()
	waitSubscribers(t, base, 0)
	adminBoard := watchBoard(t, base, admin, storeID, nil)
	waitSubscribers(t, base, 1) // before anything changes: it replays nothing
	gql(t, base, master, cookMutation, map[string]any{"id": o3.ID}).decode(t, "markCooked", new(struct{}))
	o4 := placed(t, base, customer, "1", "강남구")
	var heard []string
	for range 2 { // two transactions: their events may overtake each other
		r = adminBoard.next(t)
		heard = append(heard, fmt.Sprintf("%s %s %d", r.OrderID, r.Status, r.Version))
	}
	require.ElementsMatch(t, []string{o3.ID + " COOKED 2", o4.ID + " RECEIVED 1"}, heard)

	// Reconnecting with what it saw (order 2 only at version 1, as if its cancel had been missed
	// too), the board is replayed the current store orders newer than that, oldest first, and
	// nothing it has.
	seen := []map[string]any{{"orderId": o1.ID, "version": 2}, {"orderId": o2.ID, "version": 1}, {"orderId": o3.ID, "version": 1}}
	board = watchBoard(t, base, master, storeID, seen)
	var replayed []string
	for range 3 {
		r = board.next(t)
		replayed = append(replayed, fmt.Sprintf("%s %s %d", r.OrderID, r.Status, r.Version))
	}
	require.Equal(t, []string{o2.ID + " CANCELLED 2", o3.ID + " COOKED 2", o4.ID + " RECEIVED 1"}, replayed)

	// A copy of order 4's store.order_received heard again (the relay's second copy after a
	// crash) is not pushed again: the next push, on either board, is order 5's.
	var raw []byte
	require.NoError(t, sys.pools[db.Store].QueryRow(context.Background(),
		`SELECT event FROM outbox_events WHERE order_id = $1 AND type = $2`, o4.ID, lifecycle.StoreOrderReceived).Scan(&raw))
	var ev struct {
		ID string `json:"eventId"`
	}
	require.NoError(t, json.Unmarshal(raw, &ev))
	publishTo(t, sys.env["PIZZA_EXCHANGE"], lifecycle.StoreOrderReceived, amqp.Publishing{MessageId: ev.ID, Body: raw, ContentType: "application/json"})
	o5 := placed(t, base, customer, "1", "강남구")
	for _, b := range []*boardWatch{board, adminBoard} {
		r = b.next(t)
		require.Equal(t, []any{o5.ID, "RECEIVED", 1}, []any{r.OrderID, r.Status, r.Version})
	}
	gql(t, base, master, cookMutation, map[string]any{"id": o5.ID}).decode(t, "markCooked", new(struct{}))
	for _, b := range []*boardWatch{board, adminBoard} {
		r = b.next(t)
		require.Equal(t, []any{o5.ID, "COOKED", 2}, []any{r.OrderID, r.Status, r.Version})
	}

	// Refused: a master of another store, a customer, an agent; at the API too.
	for _, tok := range []string{mint(t, model.RoleMaster, otherStore), customer, mint(t, model.RoleAgent, "")} {
		ws := watchBoard(t, base, tok, storeID, []map[string]any{})
		require.Equal(t, "FORBIDDEN", refused(t, ws.ws))
		require.Equal(t, "FORBIDDEN", gql(t, base, tok, `query($s: ID!) { storeOrders(storeId: $s) { orderId } }`,
			map[string]any{"s": storeID}).code())
	}
	// A store that does not or cannot exist is NOT_FOUND, as for the query; a master's token
	// names its store, so to it any other store is FORBIDDEN.
	for _, id := range []string{"999", "abc", "0"} {
		for _, seen := range [][]map[string]any{nil, {}} {
			require.Equal(t, "NOT_FOUND", refused(t, watchBoard(t, base, admin, id, seen).ws), "store %q", id)
		}
		require.Equal(t, "NOT_FOUND", gql(t, base, admin, `query($s: ID!) { storeOrders(storeId: $s) { orderId } }`,
			map[string]any{"s": id}).code())
		require.Equal(t, "FORBIDDEN", refused(t, watchBoard(t, base, master, id, nil).ws))
	}
}
