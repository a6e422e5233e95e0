package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// 6. Bad input on every internal endpoint gets a clear 4xx with a code (and the field, for bad
// fields), and nothing is written anywhere.
func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	sys.start(t, db.Services...)
	addr := func(s db.Service) string { return "http://" + sys.env[strings.ToUpper(string(s))+"_ADDR"] }
	long := strings.Repeat("피", 101)
	huge := `{"customerId": "1", "pizza": "` + strings.Repeat("x", 70<<10) + `", "qty": 1, "region": "r"}`

	cases := []struct {
		name        string
		svc         db.Service
		method, url string
		contentType string
		body        string
		status      int
		code, field string
	}{
		{"place: empty object", db.Order, "POST", "/orders", "", `{}`, 400, "BAD_USER_INPUT", "customerId"},
		{"place: no pizza", db.Order, "POST", "/orders", "", `{"customerId": "1", "qty": 1, "region": "강남구"}`, 400, "BAD_USER_INPUT", "pizza"},
		{"place: qty 0", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": 0, "region": "r"}`, 400, "BAD_USER_INPUT", "qty"},
		{"place: qty negative", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": -3, "region": "r"}`, 400, "BAD_USER_INPUT", "qty"},
		{"place: qty absurd", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": 1000000, "region": "r"}`, 400, "BAD_USER_INPUT", "qty"},
		{"place: qty not a number", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": "two", "region": "r"}`, 400, "BAD_USER_INPUT", "qty"},
		{"place: pizza too long", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "` + long + `", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", "pizza"},
		{"place: blank region", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": 1, "region": "   "}`, 400, "BAD_USER_INPUT", "region"},
		{"place: control characters", db.Order, "POST", "/orders", "", `{"customerId": "1\u0000", "pizza": "p", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", "customerId"},
		{"place: customer id with space", db.Order, "POST", "/orders", "", `{"customerId": "2 ", "pizza": "p", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", "customerId"},
		{"place: customer id with leading space", db.Order, "POST", "/orders", "", `{"customerId": " 2", "pizza": "p", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", "customerId"},
		{"place: NEL in pizza", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p\u0085x", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", "pizza"},
		{"place: bidi override in pizza", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p\u202ex", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", "pizza"},
		{"place: line separator in region", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": 1, "region": "r\u2028x"}`, 400, "BAD_USER_INPUT", "region"},
		{"place: unknown field", db.Order, "POST", "/orders", "", `{"customerId": "1", "pizza": "p", "qty": 1, "region": "r", "price": 0}`, 400, "BAD_USER_INPUT", ""},
		{"place: not JSON", db.Order, "POST", "/orders", "", `customerId=1`, 400, "BAD_USER_INPUT", ""},
		{"place: truncated JSON", db.Order, "POST", "/orders", "", `{"customerId": "1", `, 400, "BAD_USER_INPUT", ""},
		{"place: two values", db.Order, "POST", "/orders", "", `{} {}`, 400, "BAD_USER_INPUT", ""},
		{"place: empty body", db.Order, "POST", "/orders", "", ``, 400, "BAD_USER_INPUT", ""},
		{"place: text/plain", db.Order, "POST", "/orders", "text/plain", `{"customerId": "1", "pizza": "p", "qty": 1, "region": "r"}`, 400, "BAD_USER_INPUT", ""},
		{"place: body too large", db.Order, "POST", "/orders", "", huge, 400, "BAD_USER_INPUT", ""},
		{"get: not an id", db.Order, "GET", "/orders/abc", "", "", 404, "NOT_FOUND", ""},
		{"get: unknown order", db.Order, "GET", "/orders/999999", "", "", 404, "NOT_FOUND", ""},
		{"cancel: unknown order", db.Order, "POST", "/orders/999999/cancel", "", "", 404, "NOT_FOUND", ""},
		{"cancel: negative id", db.Order, "POST", "/orders/-1/cancel", "", "", 404, "NOT_FOUND", ""},

		{"register: empty object", db.Store, "POST", "/stores", "", `{}`, 400, "BAD_USER_INPUT", "name"},
		{"register: no open", db.Store, "POST", "/stores", "", `{"name": "n", "region": "r"}`, 400, "BAD_USER_INPUT", "open"},
		{"register: open not a bool", db.Store, "POST", "/stores", "", `{"name": "n", "region": "r", "open": "yes"}`, 400, "BAD_USER_INPUT", "open"},
		{"register: wrong JSON", db.Store, "POST", "/stores", "", `[1, 2]`, 400, "BAD_USER_INPUT", ""},
		{"set open: unknown store", db.Store, "PUT", "/stores/999999/open", "", `{"open": true}`, 404, "NOT_FOUND", ""},
		{"set open: not an id", db.Store, "PUT", "/stores/x/open", "", `{"open": true}`, 404, "NOT_FOUND", ""},
		{"set open: missing open", db.Store, "PUT", "/stores/1/open", "", `{}`, 400, "BAD_USER_INPUT", "open"},
		{"availability: no region", db.Store, "GET", "/availability", "", "", 400, "BAD_USER_INPUT", "region"},
		{"store orders: unknown store", db.Store, "GET", "/stores/999999/orders", "", "", 404, "NOT_FOUND", ""},
		{"store orders: bad status", db.Store, "GET", "/stores/1/orders?status=BAKED", "", "", 400, "BAD_USER_INPUT", "status"},
		{"store order: unknown", db.Store, "GET", "/store-orders/nope", "", "", 404, "NOT_FOUND", ""},
		{"cooked: unknown order", db.Store, "POST", "/store-orders/nope/cooked", "", "", 404, "NOT_FOUND", ""},
		{"cooked: NUL order id", db.Store, "POST", "/store-orders/%00/cooked", "", "", 404, "NOT_FOUND", ""},
		{"store order: NUL order id", db.Store, "GET", "/store-orders/%00", "", "", 404, "NOT_FOUND", ""},
		{"store order: invalid UTF-8 order id", db.Store, "GET", "/store-orders/%ff", "", "", 404, "NOT_FOUND", ""},
		{"timeline: NUL order id", db.Store, "GET", "/timeline/%00", "", "", 404, "NOT_FOUND", ""},
		{"timeline: NUL order id (order)", db.Order, "GET", "/timeline/%00", "", "", 404, "NOT_FOUND", ""},
		{"timeline: invalid UTF-8 (customercenter)", db.CustomerCenter, "GET", "/timeline/%ff", "", "", 404, "NOT_FOUND", ""},
		{"mypage: customer id with space", db.CustomerCenter, "GET", "/mypage?customerId=2%20", "", "", 400, "BAD_USER_INPUT", "customerId"},
		{"mypage: NUL customer id", db.CustomerCenter, "GET", "/mypage?customerId=%00", "", "", 400, "BAD_USER_INPUT", "customerId"},
		{"mypage row: NUL order id", db.CustomerCenter, "GET", "/mypage/orders/%00", "", "", 404, "NOT_FOUND", ""},
		{"delivery: NUL order id", db.Delivery, "GET", "/deliveries/%00", "", "", 404, "NOT_FOUND", ""},

		{"mypage: no customer", db.CustomerCenter, "GET", "/mypage", "", "", 400, "BAD_USER_INPUT", "customerId"},
		{"mypage: limit 0", db.CustomerCenter, "GET", "/mypage?customerId=1&limit=0", "", "", 400, "BAD_USER_INPUT", "limit"},
		{"mypage: limit huge", db.CustomerCenter, "GET", "/mypage?customerId=1&limit=100000", "", "", 400, "BAD_USER_INPUT", "limit"},
		{"mypage: limit not a number", db.CustomerCenter, "GET", "/mypage?customerId=1&limit=ten", "", "", 400, "BAD_USER_INPUT", "limit"},
		{"mypage row: unknown order", db.CustomerCenter, "GET", "/mypage/orders/nope", "", "", 404, "NOT_FOUND", ""},
		{"delivery: unknown order", db.Delivery, "GET", "/deliveries/nope", "", "", 404, "NOT_FOUND", ""},
	}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, addr(c.svc)+c.url, bytes.NewBufferString(c.body))
		require.NoError(t, err)
		ct := c.contentType
		if ct == "" && c.body != "" {
			ct = "application/json"
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, c.name)
		var body struct {
			Error struct{ Code, Message, Field string }
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body), c.name)
		resp.Body.Close()
		require.Equal(t, c.status, resp.StatusCode, c.name)
		require.Equal(t, c.code, body.Error.Code, c.name)
		require.NotEmpty(t, body.Error.Message, c.name)
		if c.field != "" {
			require.Equal(t, c.field, body.Error.Field, "%s: %s", c.name, body.Error.Message)
		}
	}

	const events = "outbox_events" // not River's own housekeeping jobs
	for s, table := range map[db.Service][]string{
		db.Order:          {"orders", events},
		db.Store:          {"stores", "store_orders", events},
		db.Delivery:       {"deliveries", events},
		db.CustomerCenter: {"mypage", events},
	} {
		for _, tbl := range table {
			var n int
			require.NoError(t, sys.pools[s].QueryRow(context.Background(), "SELECT count(*) FROM "+tbl).Scan(&n))
			require.Zero(t, n, "%s: %s has rows after bad input only", s, tbl)
		}
	}
}

// An event that is well-formed but names an order no order can have ("abc", as a buggy or
// hostile producer might send) is dead-lettered as malformed by every service it reaches, and
// none of them makes a row for it (customercenter once made a myPage row for one).
func TestEventsForImpossibleOrdersAreDeadLetteredEverywhere(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	sys.start(t, db.Services...)
	ctx := context.Background()
	details := lifecycle.Payload{OrderDetails: lifecycle.OrderDetails{CustomerID: "1", Pizza: "p", Qty: 1, Region: "강남구", PlacedAt: time.Now()}}
	// order.placed reaches store and customercenter; store.order_cooked reaches order, delivery
	// and customercenter: every service's consumer sees at least one.
	var events []outbox.Event
	for _, id := range []string{"abc", "0", "01", "-1", "1 "} {
		for _, typ := range []string{lifecycle.OrderPlaced, lifecycle.StoreOrderCooked} {
			ev, err := outbox.NewEvent(typ, id, "test", details)
			require.NoError(t, err)
			events = append(events, ev)
		}
	}
	publish(t, sys, events...)
	want := map[db.Service]int{db.Order: 5, db.Store: 5, db.Delivery: 5, db.CustomerCenter: 10}
	for s, n := range want {
		require.Eventually(t, func() bool {
			var got int
			err := sys.pools[s].QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letters WHERE reason = 'malformed' AND attempts = 0`).Scan(&got)
			return err == nil && got == n
		}, 20*time.Second, 20*time.Millisecond, "%s dead-letters the %d events it got, as malformed, at once", s, n)
	}
	for s, tables := range map[db.Service][]string{
		db.Order: {"orders"}, db.Store: {"store_orders"}, db.Delivery: {"deliveries"}, db.CustomerCenter: {"mypage"},
	} {
		for _, tbl := range append(tables, "outbox_inbox", "outbox_events") {
			var n int
			require.NoError(t, sys.pools[s].QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n))
			require.Zero(t, n, "%s: %s has rows for impossible orders", s, tbl)
		}
	}
}
