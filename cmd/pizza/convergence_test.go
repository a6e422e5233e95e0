package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/delivery"
)

// 2. Convergence through the real consumers: the lifecycles of 40 orders, their events shuffled
// together and each published up to three times (some copies with a new eventId, so only the
// lattice, not the inbox, can absorb them), end in the same state in order, delivery and
// customercenter as the pure fold says. A cancelled order never comes back to life.
func TestViewsConvergeUnderShuffledDuplicatedEvents(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	sys := newSystem(t, nil)
	// Store is not started: the test plays its part, and the order service's own part.
	sys.start(t, db.Order, db.Delivery, db.CustomerCenter)
	ctx := context.Background()

	type life struct {
		id     string
		events []outbox.Event
		base   lifecycle.View
	}
	var lives []life
	var published []outbox.Event
	for i := range 40 {
		details := lifecycle.OrderDetails{CustomerID: fmt.Sprint(i % 5), Pizza: "포테이토피자", Qty: 1 + i%4, Region: "송파구", PlacedAt: time.Now().UTC().Truncate(time.Microsecond)}
		var evs []string
		switch {
		case rng.IntN(8) == 0:
			evs = []string{lifecycle.OrderRejected}
		case rng.IntN(8) == 0:
			evs = []string{lifecycle.OrderPlaced, lifecycle.StoreOrderRejected}
		default:
			steps := []string{lifecycle.StoreOrderReceived, lifecycle.StoreOrderCooked}
			evs = append([]string{lifecycle.OrderPlaced}, steps[:rng.IntN(3)]...)
		}
		if evs[0] == lifecycle.OrderPlaced && rng.IntN(2) == 0 {
			evs = append(evs, lifecycle.OrderCancelled, lifecycle.StoreOrderCancelled)
		}
		status := lifecycle.Ordered
		for _, e := range evs {
			if e == lifecycle.OrderRejected || e == lifecycle.OrderCancelled {
				st, _ := lifecycle.StatusOf(e)
				status = st // the order service decided these itself
			}
		}
		var id int64
		require.NoError(t, sys.pools[db.Order].QueryRow(ctx, `
INSERT INTO orders (customer_id, pizza, qty, region, status, reject_reason, placed_at)
VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'REJECTED' THEN 'STORE_BUSY' END, $6) RETURNING id`,
			details.CustomerID, details.Pizza, details.Qty, details.Region, string(status), details.PlacedAt).Scan(&id))
		l := life{id: fmt.Sprint(id)}
		for _, typ := range evs {
			p := lifecycle.Payload{}
			switch typ {
			case lifecycle.OrderPlaced:
				p.OrderDetails = details
			case lifecycle.OrderRejected:
				p.OrderDetails, p.RejectReason = details, lifecycle.StoreBusy
			case lifecycle.StoreOrderRejected:
				p.RejectReason = lifecycle.NoOpenStore
			case lifecycle.StoreOrderReceived, lifecycle.StoreOrderCooked, lifecycle.StoreOrderCancelled:
				p.StoreID = "77"
			}
			ev, err := outbox.NewEvent(typ, l.id, "test", p)
			require.NoError(t, err)
			l.events = append(l.events, ev)
			l.base, _, err = l.base.Apply(ev)
			require.NoError(t, err)
			for c := range 1 + rng.IntN(3) {
				cp := ev
				if c > 0 && rng.IntN(2) == 0 {
					cp.ID = uuid.New() // a copy the inbox cannot recognise
				}
				published = append(published, cp)
			}
		}
		lives = append(lives, l)
	}
	rng.Shuffle(len(published), func(i, j int) { published[i], published[j] = published[j], published[i] })

	publish(t, sys, published...)

	// Wait until delivery has applied every distinct event routed to it, so that what it has not
	// started by then it never will.
	forDelivery := map[uuid.UUID]bool{}
	for _, ev := range published {
		if ev.Type == lifecycle.StoreOrderCooked || ev.Type == lifecycle.OrderCancelled {
			forDelivery[ev.ID] = true
		}
	}
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, sys.pools[db.Delivery].QueryRow(ctx, `SELECT count(*) FROM outbox_inbox`).Scan(&n))
		return n == len(forDelivery)
	}, 20*time.Second, 5*time.Millisecond)

	for _, l := range lives {
		want := l.base.Status
		if want == lifecycle.Cooked {
			want = lifecycle.DeliveryStarted // delivery starts every cooked, uncancelled order
		}
		// The row is final when every field is: status alone can be final before order.placed
		// brings the details.
		sys.waitMyPage(t, l.id, func(r customercenter.Row) bool {
			return r.Status == want && r.Pizza == l.base.Pizza && r.Qty == l.base.Qty &&
				r.CustomerID == l.base.CustomerID && r.RejectReason == l.base.ShownRejectReason()
		})
		sys.waitOrder(t, l.id, want)

		d, err := sys.delivery(l.id)
		cancelled := false
		for _, ev := range l.events {
			cancelled = cancelled || ev.Type == lifecycle.OrderCancelled
		}
		switch {
		case cancelled:
			require.NoError(t, err)
			require.Equal(t, delivery.Cancelled, d.Status, "a cancelled order's delivery is cancelled or never started")
			require.Equal(t, lifecycle.Cancelled, want, "a cancelled order never comes back to life")
		case want == lifecycle.DeliveryStarted:
			require.NoError(t, err)
			require.Equal(t, delivery.Started, d.Status)
		default:
			require.Equal(t, errs.NotFound, errs.CodeOf(err), "order %s (%s) has no delivery", l.id, want)
		}
	}
}
