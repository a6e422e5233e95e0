package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
	"github.com/1588-pizza/pizza/services/delivery"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

// tryGQL is gql for goroutines other than the test's: it reports failures instead of failing.
func tryGQL(base, tok, query string, vars map[string]any) (gqlResponse, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return gqlResponse{}, err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return gqlResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gqlResponse{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return gqlResponse{}, err
	}
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return gqlResponse{}, fmt.Errorf("body %s: %w", raw, err)
	}
	out.Status = resp.StatusCode
	return out, nil
}

// describe shows a response's data and errors.
func describe(r gqlResponse) string {
	data := map[string]string{}
	for k, v := range r.Data {
		data[k] = string(v)
	}
	return fmt.Sprintf("data %v errors %+v", data, r.Errors)
}

// pushes records every row a myPage subscription pushes, by order, as they come.
type pushes struct {
	mu   sync.Mutex
	rows map[string][]myPageRow
	err  error
}

func (p *pushes) record(ws *wsConn, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-ws.done:
			p.fail(fmt.Errorf("websocket closed: %v", ws.err))
			return
		case m := <-ws.msgs:
			var payload struct {
				Data   struct{ MyPage myPageRow }
				Errors []gqlError
			}
			if err := json.Unmarshal(m.Payload, &payload); err != nil || m.Type != "next" || len(payload.Errors) > 0 {
				p.fail(fmt.Errorf("unexpected message %s %s (%v)", m.Type, m.Payload, err))
				return
			}
			p.mu.Lock()
			r := payload.Data.MyPage
			p.rows[r.OrderID] = append(p.rows[r.OrderID], r)
			p.mu.Unlock()
		}
	}
}

func (p *pushes) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// of returns the rows pushed for one order so far, and the subscription's failure if any.
func (p *pushes) of(orderID string) ([]myPageRow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.rows[orderID]), p.err
}

// count runs a count query on a service's database.
func (sys *system) count(t *testing.T, s db.Service, q string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, sys.pools[s].QueryRow(context.Background(), q, args...).Scan(&n))
	return n
}

// 5. Cancel and cook racing on the same orders, through GraphQL as the customer and the store's
// master send them: for each order exactly one of the two takes effect and the other is told
// CONFLICT with the reason. An order whose cancel won is CANCELLED in every service, no cook and
// no delivery was ever recorded for it, and neither the customer's live myPage nor its history
// ever showed it COOKED or DELIVERY_STARTED; an order whose cook won goes on to delivery. Some
// orders get the two one after the other, in both orders, so both outcomes are always checked.
func TestCookAndCancelRace(t *testing.T) {
	t.Parallel()
	// A subscriber that falls behind by its buffer is dropped: this one takes a few hundred rows.
	sys, base := wholeSystem(t, map[string]string{"PIZZA_SUBSCRIBER_BUFFER": "4096"})
	storeID := registerStore(t, base, "강남점", "강남구")
	customer := mint(t, model.RoleCustomer, "9")
	master := mint(t, model.RoleMaster, storeID)

	ws := connect(t, base, customer)
	ws.subscribe(t, "race", myPageSubscription, map[string]any{"c": "9"})
	seen := &pushes{rows: map[string][]myPageRow{}}
	stop := make(chan struct{})
	recorded := make(chan struct{})
	go func() { defer close(recorded); seen.record(ws, stop) }()
	defer func() { close(stop); <-recorded }()

	const n = 50
	ids := make([]string, n)
	for i := range n {
		ids[i] = placed(t, base, customer, "9", "강남구").ID
	}
	for _, id := range ids {
		sys.waitOrder(t, id, lifecycle.Received) // the store has it
	}

	cancelRes, cookRes := make([]gqlResponse, n), make([]gqlResponse, n)
	cancelErr, cookErr := make([]error, n), make([]error, n)
	cancel := func(i int) {
		cancelRes[i], cancelErr[i] = tryGQL(base, customer, cancelMutation, map[string]any{"id": ids[i]})
	}
	cook := func(i int) { cookRes[i], cookErr[i] = tryGQL(base, master, cookMutation, map[string]any{"id": ids[i]}) }
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		switch i % 10 {
		case 0: // cancelled first, then cooked
			wg.Go(func() { <-start; cancel(i); cook(i) })
		case 1: // cooked first, then cancelled
			wg.Go(func() { <-start; cook(i); cancel(i) })
		default: // both at once
			wg.Go(func() { <-start; cancel(i) })
			wg.Go(func() { <-start; cook(i) })
		}
	}
	close(start)
	wg.Wait()

	cancelWon := make([]bool, n)
	for i, id := range ids {
		require.NoError(t, cancelErr[i])
		require.NoError(t, cookErr[i])
		cancelOK, cookOK := len(cancelRes[i].Errors) == 0, len(cookRes[i].Errors) == 0
		require.True(t, cancelOK != cookOK, "order %s: exactly one of cancel and cook takes effect: cancel %s, cook %s",
			id, describe(cancelRes[i]), describe(cookRes[i]))
		cancelWon[i] = cancelOK
		if cancelOK {
			var o gqlOrder
			cancelRes[i].decode(t, "cancelOrder", &o)
			require.Equal(t, "CANCELLED", o.Status)
			require.Equal(t, "CONFLICT", cookRes[i].code(), "order %s: %+v", id, cookRes[i])
			require.Regexp(t, "(?i)cancelled", cookRes[i].Errors[0].Message, "the reason is given")
		} else {
			var so struct{ Status string }
			cookRes[i].decode(t, "markCooked", &so)
			require.Equal(t, "COOKED", so.Status)
			require.Equal(t, "CONFLICT", cancelRes[i].code(), "order %s: %+v", id, cancelRes[i])
			require.Regexp(t, "COOKED|DELIVERY_STARTED", cancelRes[i].Errors[0].Message, "the reason is given")
		}
	}
	require.True(t, cancelWon[0], "a cancel before the cook wins")
	require.False(t, cancelWon[1], "a cook before the cancel wins")

	ctx := context.Background()
	nCancelled := 0
	for i, id := range ids {
		final := "DELIVERY_STARTED"
		if cancelWon[i] {
			final = "CANCELLED"
		}
		// The customer's subscription got there.
		require.Eventually(t, func() bool {
			rows, err := seen.of(id)
			return err != nil || len(rows) > 0 && rows[len(rows)-1].Status == final
		}, 20*time.Second, 5*time.Millisecond, "myPage never pushed %s for order %s", final, id)
		rows, err := seen.of(id)
		require.NoError(t, err)
		requireProgress(t, rows, id)
		if !cancelWon[i] {
			sys.waitMyPage(t, id, status(lifecycle.DeliveryStarted))
			sys.waitOrder(t, id, lifecycle.DeliveryStarted)
			continue
		}
		nCancelled++
		for _, r := range rows {
			require.NotContains(t, []string{"COOKED", "DELIVERY_STARTED"}, r.Status,
				"order %s was cancelled, yet myPage pushed %v", id, statuses(rows))
		}
		sys.waitMyPage(t, id, status(lifecycle.Cancelled))
		sys.waitOrder(t, id, lifecycle.Cancelled)
		so, err := sys.store.Order(ctx, id)
		require.NoError(t, err)
		require.Equal(t, lifecycle.Cancelled, so.Status)
		// No cook was ever recorded, so no delivery can ever start. Delivery saw the cancellation
		// (it keeps a row for it) and never started one.
		require.Zero(t, sys.count(t, db.Store, `SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'store.order_cooked'`, id))
		require.Eventually(t, func() bool {
			d, err := sys.delivery(id)
			return err == nil && d.Status == delivery.Cancelled
		}, 20*time.Second, 5*time.Millisecond)
		require.Zero(t, sys.count(t, db.Delivery, `SELECT count(*) FROM deliveries WHERE order_id = $1 AND started`, id))
		require.Zero(t, sys.count(t, db.Delivery, `SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'delivery.started'`, id))
		// Nor did any myPage version ever show a later step.
		require.Zero(t, sys.count(t, db.CustomerCenter, `
SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'customercenter.mypage_updated'
	AND event->'payload'->>'status' IN ('COOKED', 'DELIVERY_STARTED')`, id))
	}
	require.Zero(t, sys.count(t, db.Store, `SELECT sum(unfinished) FROM stores`), "every order was cooked or cancelled")
	t.Logf("%d of %d cancels took effect, %d cooks", nCancelled, n, n-nCancelled)
}

// breakerOf reads one of the order service's breakers from its metrics: "0" closed, "2" open.
func breakerOf(t *testing.T, sys *system, name string) string {
	_, body := get(t, "http://"+sys.env["ORDER_ADDR"]+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, `pizza_breaker_state{breaker="`+name+`"}`) {
			return strings.Fields(line)[1]
		}
	}
	return ""
}

// publish sends events straight to the system's exchange, in their order, as a relay would,
// each confirmed by the broker.
func publish(t *testing.T, sys *system, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	for _, ev := range events {
		body, err := json.Marshal(ev)
		require.NoError(t, err)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, sys.env["PIZZA_EXCHANGE"], ev.Type, true, false,
			amqp.Publishing{MessageId: ev.ID.String(), DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body})
		require.NoError(t, err)
		ok, err := dc.WaitContext(ctx)
		require.NoError(t, err)
		require.True(t, ok)
	}
}

// 6. Every answer to a cancel, through the services: the store decides once it may have the
// order, and an unreachable store means UNAVAILABLE with nothing written.
func TestCancelIsDecidedByTheStore(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, map[string]string{
		"STORE_CHECK_TIMEOUT": "5s", // no placement here may be refused for a slow machine
		"BREAKER_TRIP_AFTER":  "2",
		"BREAKER_OPEN_FOR":    "1s",
	})
	sys.start(t, db.Order, db.Delivery, db.CustomerCenter)
	stopStore := sys.start(t, db.Store)
	ctx := context.Background()
	_, err := sys.store.Register(ctx, store.RegisterInput{Name: "강남점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)
	received := func() string {
		t.Helper()
		o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "5", Pizza: "불고기피자", Qty: 1, Region: "강남구"})
		require.NoError(t, err)
		sys.waitOrder(t, o.ID, lifecycle.Received)
		return o.ID
	}
	cancelledEvents := func(orderID string) int {
		return sys.count(t, db.Order, `SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'order.cancelled'`, orderID)
	}

	t.Run("cancel twice: the same answer, one cancellation", func(t *testing.T) {
		id := received()
		for range 2 {
			o, err := sys.order.Cancel(ctx, id)
			require.NoError(t, err)
			require.Equal(t, lifecycle.Cancelled, o.Status)
		}
		require.Equal(t, 1, cancelledEvents(id))
		sys.waitMyPage(t, id, status(lifecycle.Cancelled))
		_, err := sys.store.MarkCooked(ctx, id)
		requireCode(t, err, errs.Conflict)
		require.ErrorContains(t, err, "cancelled")
	})

	t.Run("cancel a cooked order: CONFLICT, nothing written", func(t *testing.T) {
		id := received()
		_, err := sys.store.MarkCooked(ctx, id)
		require.NoError(t, err)
		_, err = sys.order.Cancel(ctx, id) // the order service may not know it is cooked yet: the store does
		requireCode(t, err, errs.Conflict)
		require.Regexp(t, "COOKED|DELIVERY_STARTED", err.Error())
		sys.waitMyPage(t, id, status(lifecycle.DeliveryStarted))
		sys.waitOrder(t, id, lifecycle.DeliveryStarted)
		require.Zero(t, cancelledEvents(id))
		require.Zero(t, sys.count(t, db.Store, `SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'store.order_cancelled'`, id))
	})

	t.Run("cancel before the store has the order: it is never assigned", func(t *testing.T) {
		// An order the order service has sent (ORDERED) whose order.placed the store has not
		// consumed yet: written here directly, its event published only after the cancel.
		details := lifecycle.OrderDetails{CustomerID: "5", Pizza: "콤비네이션피자", Qty: 2, Region: "강남구", PlacedAt: time.Now().UTC().Truncate(time.Microsecond)}
		var n int64
		require.NoError(t, sys.pools[db.Order].QueryRow(ctx, `
INSERT INTO orders (customer_id, pizza, qty, region, status, placed_at) VALUES ($1, $2, $3, $4, 'ORDERED', $5) RETURNING id`,
			details.CustomerID, details.Pizza, details.Qty, details.Region, details.PlacedAt).Scan(&n))
		id := fmt.Sprint(n)
		o, err := sys.order.Cancel(ctx, id)
		require.NoError(t, err)
		require.Equal(t, lifecycle.Cancelled, o.Status)

		ev, err := outbox.NewEvent(lifecycle.OrderPlaced, id, "order", lifecycle.Payload{OrderDetails: details})
		require.NoError(t, err)
		publish(t, sys, ev)
		require.Eventually(t, func() bool {
			return sys.count(t, db.Store, `SELECT count(*) FROM outbox_inbox WHERE event_id = $1`, ev.ID) == 1
		}, 20*time.Second, 5*time.Millisecond, "the store never consumed order.placed")
		require.Zero(t, sys.count(t, db.Store, `SELECT count(*) FROM store_orders WHERE order_id = $1 AND (status <> 'CANCELLED' OR store_id IS NOT NULL)`, id))
		require.Zero(t, sys.count(t, db.Store, `SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'store.order_received'`, id))
		require.Zero(t, sys.count(t, db.Store, `SELECT sum(unfinished) FROM stores`))
		row := sys.waitMyPage(t, id, status(lifecycle.Cancelled))
		require.Equal(t, details.Pizza, row.Pizza)
		require.Equal(t, 1, cancelledEvents(id))
	})

	t.Run("a cancel the store accepted is recorded even if the order service did not get to it", func(t *testing.T) {
		id := received()
		// The store's answer, as if the order service failed right after it asked.
		require.NoError(t, sys.store.CancelOrder(ctx, id))
		sys.waitOrder(t, id, lifecycle.Cancelled) // from store.order_cancelled
		sys.waitMyPage(t, id, status(lifecycle.Cancelled))
		require.Eventually(t, func() bool {
			d, err := sys.delivery(id)
			return err == nil && d.Status == delivery.Cancelled
		}, 20*time.Second, 5*time.Millisecond, "delivery never heard of the cancellation")
		o, err := sys.order.Cancel(ctx, id) // the customer's retry
		require.NoError(t, err)
		require.Equal(t, lifecycle.Cancelled, o.Status)
		require.Equal(t, 1, cancelledEvents(id), "one order.cancelled, written while folding store.order_cancelled")
	})

	t.Run("cancel with the store down: UNAVAILABLE, nothing written; the breaker opens, then lets a retry through", func(t *testing.T) {
		id := received()
		stopStore()
		for range 3 { // two failures open the breaker; the third call is refused without trying
			_, err := sys.order.Cancel(ctx, id)
			requireCode(t, err, errs.Unavailable)
		}
		require.Equal(t, "2", breakerOf(t, sys, "store-cancel"), "the cancel breaker is open")
		require.Equal(t, "0", breakerOf(t, sys, "store-availability"), "placing orders is not affected")
		o, err := sys.order.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, lifecycle.Received, o.Status)
		require.Zero(t, cancelledEvents(id))
		require.Zero(t, sys.count(t, db.Store, `SELECT count(*) FROM store_orders WHERE order_id = $1 AND status <> 'RECEIVED'`, id))

		sys.start(t, db.Store)
		require.Eventually(t, func() bool {
			o, err = sys.order.Cancel(ctx, id)
			return err == nil
		}, 20*time.Second, 50*time.Millisecond, "the cancel never went through once the store was back")
		require.Equal(t, lifecycle.Cancelled, o.Status)
		require.Equal(t, "0", breakerOf(t, sys, "store-cancel"))
		sys.waitMyPage(t, id, status(lifecycle.Cancelled))
	})
}
