package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph/model"
)

// The seed's story on the split topology: every component its own `pizza serve`, with two
// replicas of the order service, the store service and the BFF, callers spreading over the
// replicas. Halfway, one order replica is stopped (SIGTERM); callers fail over. Every order ends
// delivered, and no effect happened twice.
func TestSplitTopologyWithReplicas(t *testing.T) {
	t.Parallel()
	budget.hold(t, 32) // the replicas hold more than a system's connections
	sys := newSystem(t, nil)
	orderB, storeB := freeAddr(t), freeAddr(t)
	sys.env["ORDER_URL"] = "http://" + sys.env["ORDER_ADDR"] + ",http://" + orderB
	sys.env["STORE_URL"] = "http://" + sys.env["STORE_ADDR"] + ",http://" + storeB
	stopOrderA := sys.start(t, db.Order)
	sys.startWith(t, map[string]string{"ORDER_ADDR": orderB}, db.Order)
	sys.start(t, db.Store)
	sys.startWith(t, map[string]string{"STORE_ADDR": storeB}, db.Store)
	sys.start(t, db.Delivery)
	sys.start(t, db.CustomerCenter)
	bffs := []string{sys.startBFF(t), sys.startBFF(t)}

	storeID := registerStore(t, bffs[0], "강남점", "강남구")
	master := mint(t, model.RoleMaster, storeID)
	const n = 20
	var ids []string
	for i := range n {
		if i == n/2 {
			stopOrderA() // the order service's first replica goes away; its peer takes over
		}
		customer := fmt.Sprint("split-", i)
		tok := mint(t, model.RoleCustomer, customer)
		watcher := connect(t, bffs[(i+1)%2], tok) // watch on the other replica
		watcher.subscribe(t, "s", myPageSubscription, map[string]any{"c": customer})
		o := placed(t, bffs[i%2], tok, customer, "강남구")
		requireProgress(t, watcher.rowsUntil(t, "RECEIVED"), o.ID)
		cooked := gql(t, bffs[(i+1)%2], master, cookMutation, map[string]any{"id": o.ID})
		require.Empty(t, cooked.Errors, "%+v", cooked.Errors)
		requireProgress(t, watcher.rowsUntil(t, "DELIVERY_STARTED"), o.ID)
		watcher.close()
		ids = append(ids, o.ID)
	}

	slices.Sort(ids)
	require.Len(t, slices.Compact(ids), n, "each placement is its own order")

	// The watcher saw DELIVERY_STARTED on myPage, which the customer center wrote; the order,
	// store and delivery services apply their own events on their own time, so each count is
	// awaited until it settles at n (a duplicate would overshoot and never settle).
	counts := []struct {
		s    db.Service
		q    string
		want int
	}{
		{db.Order, `SELECT count(*) FROM orders WHERE status = 'DELIVERY_STARTED'`, n},
		{db.Order, `SELECT count(*) FROM outbox_events WHERE type = 'order.placed'`, n},
		{db.Store, `SELECT count(*) FROM store_orders WHERE status = 'COOKED'`, n},
		{db.Store, `SELECT count(*) FROM outbox_events WHERE type = 'store.order_received'`, n},
		{db.Delivery, `SELECT count(*) FROM deliveries WHERE status = 'STARTED'`, n},
		{db.Delivery, `SELECT count(*) FROM outbox_events WHERE type = 'delivery.started'`, n},
		{db.CustomerCenter, `SELECT count(*) FROM mypage WHERE status = 'DELIVERY_STARTED'`, n},
		{db.Store, `SELECT coalesce(sum(unfinished), 0) FROM stores`, 0},
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, q := range counts {
			var got int
			if assert.NoError(c, sys.pools[q.s].QueryRow(context.Background(), q.q).Scan(&got)) {
				assert.Equal(c, q.want, got, "%s: %s", q.s, q.q)
			}
		}
	}, 30*time.Second, 50*time.Millisecond)
}
