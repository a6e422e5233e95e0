package lifecycle

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/1588-pizza/pizza/outbox"
)

func TestJoinIsALattice(t *testing.T) {
	t.Parallel()
	all := []Status{Ordered, Received, Cooked, DeliveryStarted, Rejected, Cancelled}
	for _, a := range all {
		require.Equal(t, a, Join(a, a), "idempotent")
		for _, b := range all {
			require.Equal(t, Join(a, b), Join(b, a), "commutative %s %s", a, b)
			for _, c := range all {
				require.Equal(t, Join(Join(a, b), c), Join(a, Join(b, c)), "associative")
			}
		}
	}
	require.Equal(t, Cooked, Join(Received, Cooked))
	require.Equal(t, Cooked, Join(Cooked, Received), "never backwards")
	require.Equal(t, Cancelled, Join(DeliveryStarted, Cancelled), "cancel wins over progress")
	require.Equal(t, Rejected, Join(DeliveryStarted, Rejected))
	require.Equal(t, Cancelled, Join(Rejected, Cancelled))
	require.Equal(t, Ordered, Join("", Ordered))
}

func event(t require.TestingT, typ, orderID string, p Payload) outbox.Event {
	body, err := json.Marshal(p)
	require.NoError(t, err)
	return outbox.Event{ID: uuid.New(), Type: typ, OrderID: orderID, OccurredAt: time.Now(), Producer: "test", Payload: body}
}

// lifecycleGen draws one possible life of an order: the events its services would emit.
func lifecycleGen(t *rapid.T) []outbox.Event {
	const id = "42"
	details := OrderDetails{CustomerID: "7", Pizza: "pepperoni", Qty: 2, Region: "jongno", PlacedAt: time.Unix(1700000000, 0).UTC()}
	if rapid.Bool().Draw(t, "rejectedAtPlacement") {
		return []outbox.Event{event(t, OrderRejected, id, Payload{OrderDetails: details, RejectReason: StoreBusy})}
	}
	evs := []outbox.Event{event(t, OrderPlaced, id, Payload{OrderDetails: details})}
	if rapid.Bool().Draw(t, "rejectedByStore") {
		evs = append(evs, event(t, StoreOrderRejected, id, Payload{RejectReason: NoOpenStore}))
	} else {
		steps := []outbox.Event{
			event(t, StoreOrderReceived, id, Payload{StoreID: "3"}),
			event(t, StoreOrderCooked, id, Payload{StoreID: "3"}),
			event(t, DeliveryStartedEvent, id, Payload{DeliveryID: "9"}),
		}
		evs = append(evs, steps[:rapid.IntRange(0, len(steps)).Draw(t, "progress")]...)
	}
	if rapid.Bool().Draw(t, "cancelled") {
		evs = append(evs, event(t, OrderCancelled, id, Payload{}), event(t, StoreOrderCancelled, id, Payload{}))
		if rapid.Bool().Draw(t, "deliveryCancelled") {
			evs = append(evs, event(t, DeliveryCancelled, id, Payload{}))
		}
	}
	return evs
}

func fold(t require.TestingT, evs []outbox.Event) View {
	var v View
	for _, ev := range evs {
		var err error
		v, _, err = v.Apply(ev)
		require.NoError(t, err)
	}
	return v
}

// Every permutation of a lifecycle's events, each delivered up to three times, folds to the
// same view; a cancelled order never comes back to life.
func TestFoldConvergesUnderReorderingAndDuplication(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		evs := lifecycleGen(t)
		want := fold(t, evs)

		var delivered []outbox.Event
		for i, ev := range evs {
			for range rapid.IntRange(1, 3).Draw(t, "copies"+string(rune('a'+i))) {
				delivered = append(delivered, ev)
			}
		}
		delivered = rapid.Permutation(delivered).Draw(t, "order")
		require.Equal(t, want, fold(t, delivered))

		for _, ev := range evs {
			if ev.Type == OrderCancelled {
				require.Equal(t, Cancelled, want.Status, "a cancelled order stays cancelled")
				require.Empty(t, want.ShownRejectReason())
			}
		}
		require.Equal(t, "pepperoni", want.Pizza, "details arrive with placed/rejected whatever the order")
	})
}

func TestApplyReportsChangesAndRefusesForeignEvents(t *testing.T) {
	t.Parallel()
	v, changed, err := View{}.Apply(event(t, OrderPlaced, "1", Payload{OrderDetails: OrderDetails{Pizza: "cheese", Qty: 1}}))
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, Ordered, v.Status)

	_, changed, err = v.Apply(event(t, OrderPlaced, "1", Payload{OrderDetails: OrderDetails{Pizza: "cheese", Qty: 1}}))
	require.NoError(t, err)
	require.False(t, changed, "a duplicate changes nothing")

	_, _, err = v.Apply(event(t, StoreOrderCooked, "2", Payload{}))
	require.ErrorContains(t, err, "applied to order 1")
	_, _, err = v.Apply(event(t, MyPageUpdated, "1", Payload{}))
	require.ErrorContains(t, err, "not an order lifecycle event")
}
