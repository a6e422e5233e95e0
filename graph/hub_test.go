package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/store"
)

func update(t *testing.T, orderID, customerID string, version int64, status lifecycle.Status) []byte {
	t.Helper()
	return updatePlaced(t, orderID, customerID, version, status, time.Time{})
}

func updatePlaced(t *testing.T, orderID, customerID string, version int64, status lifecycle.Status, placed time.Time) []byte {
	t.Helper()
	row := customercenter.Row{Version: version}
	row.OrderID, row.CustomerID, row.Status, row.Pizza, row.PlacedAt = orderID, customerID, status, "p", placed
	ev, err := outbox.NewEvent(lifecycle.MyPageUpdated, orderID, "customercenter", row)
	require.NoError(t, err)
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

// testSub is a subscriber driven the way the websocket transport drives one: wakes arrive on a
// channel, and recv takes rows out with fill.
type testSub[T any] struct {
	*subscriber[T]
	woken chan struct{}
}

func driven[T any](sub *subscriber[T]) testSub[T] {
	s := testSub[T]{sub, make(chan struct{}, 1)}
	s.mu.Lock()
	s.wake = func() {
		select {
		case s.woken <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return s
}

func subscribe(h *Hub, customerID string, reread func() ([]customercenter.Row, error), sent map[string]int, replay bool) testSub[*model.MyPageOrder] {
	return driven(h.subscribe(customerID, reread, sent, replay))
}

func testBoard(h *Hub, storeID string) testSub[*model.StoreOrder] {
	return driven(h.boards.subscribe(storeID, nil, nil, false))
}

// recv returns the next row; nil when the subscription ended.
func recv[T any](t *testing.T, s testSub[T]) T {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if s.fill() {
			return <-s.out
		}
		select {
		case <-s.woken:
		case <-deadline:
			t.Fatal("no row")
		}
	}
}

func code(err *gqlerror.Error) any {
	if err == nil {
		return nil
	}
	return err.Extensions["code"]
}

// A subscriber that does not read is dropped once its queue is full: its subscription ends with
// UNAVAILABLE; the others go on getting every row, and the hub never blocks.
func TestHubDropsASlowSubscriberWithoutStallingOthers(t *testing.T) {
	t.Parallel()
	h := NewHub(2, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	slow, fast := subscribe(h, "1", nil, nil, false), subscribe(h, "1", nil, nil, false)
	other := subscribe(h, "2", nil, nil, false)
	for v := int64(1); v <= 5; v++ {
		h.Publish(update(t, "10", "1", v, lifecycle.Received))
		require.Equal(t, int(v), recv(t, fast).Version)
	}
	require.Nil(t, recv(t, slow), "the slow one's stream is over")
	require.Equal(t, "UNAVAILABLE", code(slow.failure()))
	require.Equal(t, 2, h.Subscribers(), "the slow one is gone, the others remain")
	require.False(t, other.fill(), "another customer's subscriber gets nothing")
	require.Nil(t, fast.failure())
}

// A resync re-reads the current rows and sends only what the client does not have; one that
// cannot be read ends the subscription with UNAVAILABLE. A replay is a resync at the start.
func TestHubResyncSendsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	h := NewHub(4, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	current := func(versions ...int64) func() ([]customercenter.Row, error) {
		return func() ([]customercenter.Row, error) {
			var rows []customercenter.Row
			for i, v := range versions { // newest first, as customercenter answers
				row := customercenter.Row{Version: v}
				row.OrderID, row.CustomerID, row.Status = fmt.Sprint(len(versions)-i), "1", lifecycle.Received
				rows = append(rows, row)
			}
			return rows, nil
		}
	}
	// The client holds order 1 at version 3 and order 2 at version 1; the current rows are
	// order 2 at version 2 and order 1 at version 3.
	s := subscribe(h, "1", current(2, 3), map[string]int{"1": 3, "2": 1}, true)
	r := recv(t, s)
	require.Equal(t, "2", r.OrderID)
	require.Equal(t, 2, r.Version)
	require.False(t, s.fill(), "order 1 was current already")

	failing := subscribe(h, "1", func() ([]customercenter.Row, error) { return nil, errors.New("down") }, nil, false)
	h.Resync()
	require.False(t, s.fill(), "nothing new for the first")
	require.Nil(t, recv(t, failing))
	require.Equal(t, "UNAVAILABLE", code(failing.failure()))
}

// The rows a replay reads do not count against the buffer: a myPage (or a board) with more rows
// than the buffer keeps its subscriber while the client reads them, and live rows still may queue
// up to the buffer beside them; one more, and the subscriber is dropped.
func TestHubReplayLargerThanTheBufferKeepsTheSubscriber(t *testing.T) {
	t.Parallel()
	h := NewHub(2, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := subscribe(h, "1", fiveReceived, map[string]int{}, true)
	require.Equal(t, "1", recv(t, s).OrderID, "the replay, oldest first")
	h.Publish(update(t, "6", "1", 1, lifecycle.Ordered))
	h.Publish(update(t, "7", "1", 1, lifecycle.Ordered))
	var got []string
	for range 6 {
		got = append(got, recv(t, s).OrderID)
	}
	require.Equal(t, []string{"2", "3", "4", "5", "6", "7"}, got)
	require.Nil(t, s.failure())

	for v := int64(2); v <= 4; v++ { // three live rows unread, with a buffer of two
		h.Publish(update(t, "6", "1", v, lifecycle.Received))
	}
	require.Nil(t, recv(t, s), "the third live row did not fit: dropped")
	require.Equal(t, "UNAVAILABLE", code(s.failure()))
}

// fiveReceived is customer 1's myPage as a re-read finds it: orders 1 to 5, RECEIVED, newest first.
func fiveReceived() ([]customercenter.Row, error) {
	var rows []customercenter.Row
	for i := 5; i >= 1; i-- {
		row := customercenter.Row{Version: 1}
		row.OrderID, row.CustomerID, row.Status = fmt.Sprint(i), "1", lifecycle.Received
		rows = append(rows, row)
	}
	return rows, nil
}

// Live rows queued before a resync's rows count against the buffer only while they wait: once the
// client has read them, the resync's rows behind them leave room for as many live rows again.
func TestHubResyncBehindLiveRowsKeepsTheSubscriber(t *testing.T) {
	t.Parallel()
	h := NewHub(2, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := subscribe(h, "1", fiveReceived, map[string]int{}, false)
	h.Publish(update(t, "6", "1", 1, lifecycle.Ordered)) // two live rows: the buffer is full
	h.Publish(update(t, "7", "1", 1, lifecycle.Ordered))
	h.Resync() // its five rows queue behind them
	require.Equal(t, "6", recv(t, s).OrderID)
	require.Equal(t, "7", recv(t, s).OrderID)
	h.Publish(update(t, "8", "1", 1, lifecycle.Ordered)) // no live row waits now: it fits
	h.Publish(update(t, "9", "1", 1, lifecycle.Ordered))
	var got []string
	for range 7 {
		got = append(got, recv(t, s).OrderID)
	}
	require.Equal(t, []string{"1", "2", "3", "4", "5", "8", "9"}, got)
	require.Nil(t, s.failure())
}

// Versions of one order that arrive out of order are delivered in order; a gap that is never
// filled is skipped after the hold time; stale and duplicate versions are not delivered.
func TestHubDeliversEachOrderInVersionOrder(t *testing.T) {
	t.Parallel()
	h := NewHub(16, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := subscribe(h, "1", nil, nil, false)
	h.Publish(update(t, "10", "1", 2, lifecycle.Received))
	h.Publish(update(t, "10", "1", 1, lifecycle.Ordered))
	require.Equal(t, 1, recv(t, s).Version)
	require.Equal(t, 2, recv(t, s).Version)
	h.Publish(update(t, "10", "1", 2, lifecycle.Received)) // duplicate
	h.Publish(update(t, "10", "1", 4, lifecycle.DeliveryStarted))
	require.Equal(t, 4, recv(t, s).Version, "version 3 never came: 4 goes out after the hold")
	h.Publish(update(t, "10", "1", 3, lifecycle.Cooked)) // too late
	h.Publish(update(t, "10", "1", 5, lifecycle.Cancelled))
	require.Equal(t, 5, recv(t, s).Version)
	require.False(t, s.fill(), "nothing else")
}

// Garbage on the queue is ignored, not fatal.
func TestHubIgnoresMalformedUpdates(t *testing.T) {
	t.Parallel()
	h := NewHub(4, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := subscribe(h, "1", nil, nil, false)
	h.Publish([]byte(`not json`))
	h.Publish(update(t, "10", "1", 1, lifecycle.Ordered))
	require.Equal(t, "10", recv(t, s).OrderID)
}

// The hub forgets orders it has not heard of for a while, so its memory follows the recent rate.
// The next update of a forgotten order placed long ago goes out at once; a new order's version
// that skips ahead is still held for the ones before it.
func TestHubForgetsQuietOrders(t *testing.T) {
	t.Parallel()
	h := newHub(4, time.Hour, 50*time.Millisecond, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := subscribe(h, "1", nil, nil, false)
	h.Publish(update(t, "10", "1", 1, lifecycle.Ordered))
	require.Equal(t, 1, recv(t, s).Version)
	require.Eventually(t, func() bool {
		h.myPage.mu.Lock()
		defer h.myPage.mu.Unlock()
		return len(h.myPage.orders) == 0
	}, 5*time.Second, 5*time.Millisecond, "the quiet order is forgotten")

	// Version 3 of an order placed an hour ago; a held row would wait the hold, an hour.
	h.Publish(updatePlaced(t, "10", "1", 3, lifecycle.Cooked, time.Now().Add(-time.Hour)))
	require.Equal(t, 3, recv(t, s).Version)
	h.Publish(update(t, "11", "1", 2, lifecycle.Received))
	require.False(t, s.fill(), "a new order's version 2 waits for its version 1")
	h.Publish(update(t, "11", "1", 1, lifecycle.Ordered))
	require.Equal(t, 1, recv(t, s).Version)
	require.Equal(t, 2, recv(t, s).Version)
}

// storeEvent is a store event about an order a store has, carrying the store order as it is now.
func storeEvent(t *testing.T, typ, orderID, storeID string, version int64, status lifecycle.Status) []byte {
	t.Helper()
	p := store.EventPayload{Payload: lifecycle.Payload{StoreID: storeID}, StoreOrder: &store.Order{
		OrderID: orderID, StoreID: storeID, Pizza: "p", Qty: 1, Status: status, ReceivedAt: time.Now(), Version: version}}
	ev, err := outbox.NewEvent(typ, orderID, "store", p)
	require.NoError(t, err)
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

// The store's events reach the boards of their store, in version order, and nobody else: not
// another store's board, not a myPage subscriber (even of a customer named like the store). An
// event without a store order (a rejection, a cancel that arrived first) is no board's.
func TestHubHandsStoreOrdersToTheirStoresBoards(t *testing.T) {
	t.Parallel()
	h := NewHub(8, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	board := testBoard(h, "1")
	other := testBoard(h, "2")
	customer := subscribe(h, "1", nil, nil, false)

	h.Publish(storeEvent(t, lifecycle.StoreOrderCooked, "10", "1", 2, lifecycle.Cooked))
	h.Publish(storeEvent(t, lifecycle.StoreOrderReceived, "10", "1", 1, lifecycle.Received))
	h.Publish(storeEvent(t, lifecycle.StoreOrderReceived, "10", "1", 1, lifecycle.Received)) // a duplicate
	rejected, err := outbox.NewEvent(lifecycle.StoreOrderRejected, "11", "store", store.EventPayload{
		Payload: lifecycle.Payload{RejectReason: lifecycle.NoOpenStore}})
	require.NoError(t, err)
	body, err := json.Marshal(rejected)
	require.NoError(t, err)
	h.Publish(body)
	h.Publish(storeEvent(t, lifecycle.StoreOrderCancelled, "12", "1", 2, lifecycle.Cancelled))

	r := recv(t, board)
	require.Equal(t, []any{"10", "1", 1, model.OrderStatusReceived}, []any{r.ID, r.StoreID, r.Version, r.Status})
	r = recv(t, board)
	require.Equal(t, []any{"10", 2, model.OrderStatusCooked}, []any{r.OrderID, r.Version, r.Status})
	// Order 12's version 1 never came (the BFF started after it): version 2 goes out after the hold.
	r = recv(t, board)
	require.Equal(t, []any{"12", 2, model.OrderStatusCancelled}, []any{r.OrderID, r.Version, r.Status})
	require.False(t, board.fill(), "nothing else")
	require.False(t, other.fill(), "another store's board gets nothing")
	require.False(t, customer.fill(), "a myPage subscriber gets nothing")
	require.Equal(t, 3, h.Subscribers())
}
