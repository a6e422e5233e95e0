package graph

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/lifecycle"
)

func update(t *testing.T, orderID, customerID string, version int64, status lifecycle.Status) []byte {
	t.Helper()
	row := customercenter.Row{Version: version}
	row.OrderID, row.CustomerID, row.Status, row.Pizza = orderID, customerID, status, "p"
	ev, err := outbox.NewEvent(lifecycle.MyPageUpdated, orderID, "customercenter", row)
	require.NoError(t, err)
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

func recv(t *testing.T, s *subscriber) *model.MyPageOrder {
	t.Helper()
	select {
	case r := <-s.rows:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no row")
		return nil
	}
}

// A subscriber that does not read is dropped once its buffer is full; the others go on getting
// every row, and the hub never blocks.
func TestHubDropsASlowSubscriberWithoutStallingOthers(t *testing.T) {
	t.Parallel()
	h := NewHub(2, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	slow, fast := h.subscribe("1"), h.subscribe("1")
	other := h.subscribe("2")
	for v := int64(1); v <= 5; v++ {
		h.Publish(update(t, "10", "1", v, lifecycle.Received))
		require.Equal(t, int(v), recv(t, fast).Version)
	}
	select {
	case <-slow.dropped:
	default:
		t.Fatal("the slow subscriber should have been dropped")
	}
	require.Len(t, slow.rows, 2, "it kept what fitted")
	require.Equal(t, 2, h.Subscribers(), "the slow one is gone, the others remain")
	require.Empty(t, other.rows, "another customer's subscriber gets nothing")
}

// Versions of one order that arrive out of order are delivered in order; a gap that is never
// filled is skipped after the hold time; stale and duplicate versions are not delivered.
func TestHubDeliversEachOrderInVersionOrder(t *testing.T) {
	t.Parallel()
	h := NewHub(16, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := h.subscribe("1")
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
	require.Empty(t, s.rows)
}

// Garbage on the queue is ignored, not fatal.
func TestHubIgnoresMalformedUpdates(t *testing.T) {
	t.Parallel()
	h := NewHub(4, time.Second, slog.New(slog.DiscardHandler))
	defer h.Close()
	s := h.subscribe("1")
	h.Publish([]byte(`not json`))
	h.Publish(update(t, "10", "1", 1, lifecycle.Ordered))
	require.Equal(t, "10", recv(t, s).OrderID)
}
