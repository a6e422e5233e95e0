package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
)

const (
	placeMutation    = `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { id customerId status rejectReason retryAfterSeconds storeId } }`
	cancelMutation   = `mutation($id: ID!) { cancelOrder(orderId: $id) { id status } }`
	cookMutation     = `mutation($id: ID!) { markCooked(orderId: $id) { orderId storeId status } }`
	registerMutation = `mutation($name: String!, $region: String!) { registerStore(input: {name: $name, region: $region, open: true}) { id name region open } }`
)

type gqlOrder struct {
	ID, CustomerID, Status string
	RejectReason           *string
	RetryAfterSeconds      *int
	StoreID                *string
}

func place(t *testing.T, base, tok, customer, region string, extra ...map[string]any) gqlResponse {
	in := map[string]any{"customerId": customer, "pizza": "하와이안피자", "qty": 1, "region": region}
	for _, e := range extra {
		for k, v := range e {
			in[k] = v
		}
	}
	return gql(t, base, tok, placeMutation, map[string]any{"in": in})
}

func placed(t *testing.T, base, tok, customer, region string, extra ...map[string]any) gqlOrder {
	t.Helper()
	var o gqlOrder
	place(t, base, tok, customer, region, extra...).decode(t, "placeOrder", &o)
	return o
}

func registerStore(t *testing.T, base, name, region string) string {
	t.Helper()
	var st struct{ ID string }
	gql(t, base, mint(t, model.RoleAdmin, ""), registerMutation, map[string]any{"name": name, "region": region}).decode(t, "registerStore", &st)
	return st.ID
}

// requireProgress checks rows of one order: versions strictly increase, statuses never go back.
func requireProgress(t *testing.T, rows []myPageRow, orderID string) {
	t.Helper()
	rank := map[string]int{"ORDERED": 1, "RECEIVED": 2, "COOKED": 3, "DELIVERY_STARTED": 4, "REJECTED": 10, "CANCELLED": 11}
	for i, r := range rows {
		require.Equal(t, orderID, r.OrderID)
		if i > 0 {
			require.Greater(t, r.Version, rows[i-1].Version, "versions only increase: %+v", rows)
			require.GreaterOrEqual(t, rank[r.Status], rank[rows[i-1].Status], "statuses never go back: %+v", rows)
		}
	}
}

// 1. The seed's whole story through GraphQL, with the customer watching on a subscription.
func TestSeedStoryThroughGraphQL(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	storeID := registerStore(t, base, "강남점", "강남구")
	customer := mint(t, model.RoleCustomer, "1")
	master := mint(t, model.RoleMaster, storeID)

	ws := connect(t, base, customer)
	ws.subscribe(t, "s1", myPageSubscription, map[string]any{"c": "1"})

	o := placed(t, base, customer, "1", "강남구")
	require.Equal(t, "ORDERED", o.Status)
	rows := ws.rowsUntil(t, "RECEIVED")
	requireProgress(t, rows, o.ID)
	require.Equal(t, storeID, *rows[len(rows)-1].StoreID)

	var cooked struct{ ID, OrderID, Status string }
	gql(t, base, master, `mutation($id: ID!) { markCooked(orderId: $id) { id orderId status } }`,
		map[string]any{"id": o.ID}).decode(t, "markCooked", &cooked)
	require.Equal(t, "COOKED", cooked.Status)
	require.Equal(t, o.ID, cooked.ID, "a StoreOrder's cache key is its order's id")
	require.Equal(t, o.ID, cooked.OrderID)
	rows2 := ws.rowsUntil(t, "DELIVERY_STARTED")
	requireProgress(t, append(rows, rows2...), o.ID)
	require.NotNil(t, rows2[len(rows2)-1].DeliveryID)
	// Each step the order took, and when, in the lattice's order.
	var stepped []struct {
		OrderID string
		Steps   []struct {
			Status string
			At     time.Time
		}
	}
	gql(t, base, customer, `query { myPage(customerId: "1") { orderId steps { status at } } }`, nil).decode(t, "myPage", &stepped)
	require.Len(t, stepped, 1)
	var steps []string
	for i, st := range stepped[0].Steps {
		steps = append(steps, st.Status)
		require.False(t, st.At.IsZero())
		if i > 0 {
			require.False(t, st.At.Before(stepped[0].Steps[i-1].At), "each step happened after the one before: %+v", stepped[0].Steps)
		}
	}
	require.Equal(t, []string{"ORDERED", "RECEIVED", "COOKED", "DELIVERY_STARTED"}, steps)
	require.Equal(t, "CONFLICT", gql(t, base, customer, cancelMutation, map[string]any{"id": o.ID}).code())

	// Cancel before cooking.
	o2 := placed(t, base, customer, "1", "강남구")
	requireProgress(t, ws.rowsUntil(t, "RECEIVED"), o2.ID)
	var c struct{ Status string }
	gql(t, base, customer, cancelMutation, map[string]any{"id": o2.ID}).decode(t, "cancelOrder", &c)
	require.Equal(t, "CANCELLED", c.Status)
	requireProgress(t, ws.rowsUntil(t, "CANCELLED"), o2.ID)
	require.Equal(t, "CONFLICT", gql(t, base, master, cookMutation, map[string]any{"id": o2.ID}).code())

	// No open store in the region.
	o3 := placed(t, base, customer, "1", "제주시")
	require.Equal(t, "REJECTED", o3.Status)
	require.Equal(t, "NO_OPEN_STORE", *o3.RejectReason)
	r3 := ws.row(t)
	require.Equal(t, o3.ID, r3.OrderID)
	require.Equal(t, "REJECTED", r3.Status)
	require.Equal(t, "NO_OPEN_STORE", *r3.RejectReason)

	// The same idempotency key is the same order, and tells the subscription nothing new.
	k1 := placed(t, base, customer, "1", "강남구", map[string]any{"idempotencyKey": "call-42"})
	k2 := placed(t, base, customer, "1", "강남구", map[string]any{"idempotencyKey": "call-42"})
	require.Equal(t, k1.ID, k2.ID)
	requireProgress(t, ws.rowsUntil(t, "RECEIVED"), k1.ID)

	// myPage as a query, newest first.
	var page []myPageRow
	gql(t, base, customer, `{ myPage(customerId: "1") { id orderId status version } }`, nil).decode(t, "myPage", &page)
	require.Len(t, page, 4)
	for _, r := range page {
		require.Equal(t, r.OrderID, r.ID, "a MyPageOrder's cache key is its order's id")
	}
	require.Equal(t, []string{k1.ID, o3.ID, o2.ID, o.ID}, []string{page[0].OrderID, page[1].OrderID, page[2].OrderID, page[3].OrderID})
	require.Equal(t, []string{"RECEIVED", "REJECTED", "CANCELLED", "DELIVERY_STARTED"}, statuses(page))

	// A reconnecting client says what it has and gets exactly what it missed.
	ws.close()
	seen := []map[string]any{}
	for _, r := range page[1:] {
		seen = append(seen, map[string]any{"orderId": r.OrderID, "version": r.Version})
	}
	ws2 := connect(t, base, customer)
	ws2.subscribe(t, "s2", myPageSubscription, map[string]any{"c": "1", "seen": seen})
	missed := ws2.row(t)
	require.Equal(t, k1.ID, missed.OrderID)
	require.Equal(t, page[0].Version, missed.Version)
}

// 2. Authorization over the real services, one story per role: what only the whole system shows
// (an order's store comes from the store service, a board's replay and myPage's rows from their
// services, each service's status). graph's TestAuthorizationMatrix holds the whole matrix,
// every operation for every role, over fakes.
func TestAuthorizationEndToEnd(t *testing.T) {
	t.Parallel()
	sys, base := wholeSystem(t, nil)
	ownStore := registerStore(t, base, "강남점", "강남구")
	otherStore := registerStore(t, base, "종로점", "종로구")
	customer := mint(t, model.RoleCustomer, "1")
	agent := mint(t, model.RoleAgent, "")
	master := mint(t, model.RoleMaster, ownStore)
	admin := mint(t, model.RoleAdmin, "")
	// Orders: customer 1's in the master's own store, customer 2's in another store, placed by
	// the agent for each.
	newOrder := func(customer, region string) string {
		o := placed(t, base, agent, customer, region)
		sys.waitOrder(t, o.ID, "RECEIVED")
		return o.ID
	}
	own, other := newOrder("1", "강남구"), newOrder("2", "종로구")
	orderQuery := `query($id: ID!) { order(id: $id) { id } }`
	read := func(tok, id string) string {
		resp := gql(t, base, tok, orderQuery, map[string]any{"id": id})
		require.Empty(t, resp.Errors)
		return string(resp.Data["order"])
	}

	// The customer reads their own order; another's is no order at all; their myPage is replayed.
	require.NotEqual(t, "null", read(customer, own))
	require.Equal(t, "null", read(customer, other))
	ws := connect(t, base, customer)
	ws.subscribe(t, "s", myPageSubscription, map[string]any{"c": "1", "seen": []any{}})
	m := ws.next(t, 10*time.Second)
	require.Equal(t, "next", m.Type, "%s", m.Payload) // the replay of the customer's rows
	require.NotContains(t, string(m.Payload), `"errors"`)
	require.Contains(t, string(m.Payload), own)
	ws.close()

	// The agent searches the customers.
	resp := gql(t, base, agent, customersQuery, nil)
	require.Empty(t, resp.Errors)
	require.NotEqual(t, "null", string(resp.Data["customers"]))

	// The master reads an order in their store (the store service put it there), not another
	// store's; cooks in their store, never in another's; and their board is replayed.
	require.NotEqual(t, "null", read(master, own))
	require.Equal(t, "null", read(master, other))
	require.Equal(t, "NOT_FOUND", gql(t, base, master, cookMutation, map[string]any{"id": other}).code())
	b := watchBoard(t, base, master, ownStore, []map[string]any{})
	require.Equal(t, ownStore, b.next(t).StoreID) // the replay of the store's orders
	b.ws.close()

	// The admin reads every service's status and any store's board.
	resp = gql(t, base, admin, systemStatusQuery, nil)
	require.Empty(t, resp.Errors)
	require.NotEqual(t, "null", string(resp.Data["systemStatus"]))
	b = watchBoard(t, base, admin, otherStore, []map[string]any{})
	require.Equal(t, otherStore, b.next(t).StoreID)
	b.ws.close()

	// No token at all is never enough.
	require.Equal(t, "UNAUTHENTICATED", gql(t, base, "", orderQuery, map[string]any{"id": own}).code())
}

// 3. Abuse: each attempt gets its 4xx or error code, and no resolver runs (no order is written).
func TestAbuseIsRefusedBeforeResolvers(t *testing.T) {
	t.Parallel()
	sys, base := wholeSystem(t, map[string]string{"PIZZA_WS_INIT_TIMEOUT": "300ms"})
	registerStore(t, base, "강남점", "강남구")
	customer := mint(t, model.RoleCustomer, "1")
	placeQuery := `mutation { placeOrder(input: {customerId: "1", pizza: "p", qty: 1, region: "강남구"}) { id } }`
	post := func(contentType, auth, body string) gqlResponse {
		req, err := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", contentType)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return doGQL(t, req)
	}
	queryBody := func(q string) string {
		b, _ := json.Marshal(map[string]any{"query": q, "variables": map[string]any{
			"i": map[string]any{"customerId": "1", "pizza": "p", "qty": 1, "region": "강남구"}}})
		return string(b)
	}

	forged := tokenWithSecret(t, "someone else's secret, 32 bytes!!", model.RoleAdmin)
	cases := []struct {
		name   string
		resp   gqlResponse
		status int
		code   string
	}{
		// Request errors are 200 in application/json (what the client accepts here), as GraphQL
		// over HTTP recommends; with application/graphql-response+json they are 4xx (see graph's tests).
		{"missing token", post("application/json", "", queryBody(placeQuery)), 200, "UNAUTHENTICATED"},
		{"forged token", post("application/json", "Bearer "+forged, queryBody(placeQuery)), 200, "UNAUTHENTICATED"},
		{"expired token", post("application/json", "Bearer "+mintFor(t, model.RoleCustomer, "1", -time.Minute), queryBody(placeQuery)), 200, "UNAUTHENTICATED"},
		{"not a bearer", post("application/json", "Basic Zm9vOmJhcg==", queryBody(placeQuery)), 200, "UNAUTHENTICATED"},
		{"10 MB body", post("application/json", "Bearer "+customer, `{"query": "`+strings.Repeat(" ", 10<<20)+`{ stores { id } }"}`), 413, "BAD_USER_INPUT"},
		{"2,000 aliases", post("application/json", "Bearer "+customer, queryBody(aliases(2000))), 200, "BAD_USER_INPUT"},
		{"40 aliases", post("application/json", "Bearer "+customer, queryBody(aliases(40))), 200, "BAD_USER_INPUT"},
		{"depth 20", post("application/json", "Bearer "+customer, queryBody(deep(20))), 200, "BAD_USER_INPUT"},
		{"text/plain", post("text/plain", "Bearer "+customer, queryBody(placeQuery)), 415, "BAD_USER_INPUT"},
		{"form post", post("application/x-www-form-urlencoded", "Bearer "+customer, "query="+url.QueryEscape(placeQuery)), 415, "BAD_USER_INPUT"},
		{"bad JSON", post("application/json", "Bearer "+customer, `{"query": `), 400, "BAD_USER_INPUT"},
		{"unknown field", post("application/json", "Bearer "+customer, queryBody(`{ stores { id price } }`)), 200, "BAD_USER_INPUT"},
		{"mutation via GET", getGQL(t, base, customer, placeQuery), 405, "BAD_USER_INPUT"},
		{"subscription over POST", post("application/json", "Bearer "+customer, queryBody(`subscription { myPage(customerId: "1") { version } }`)), 200, "BAD_USER_INPUT"},
		{"fragment bomb, no token", post("application/json", "", queryBody(fragmentBomb(24))), 200, "BAD_USER_INPUT"},
		{"not quite JSON", post("application/jsonx", "Bearer "+customer, queryBody(placeQuery)), 415, "BAD_USER_INPUT"},
		{"another upgrade", upgrade(t, base, "h2c", ""), 400, "BAD_USER_INPUT"},
		{"the old sub-protocol", upgrade(t, base, "websocket", "graphql-ws, x-graphql-transport-ws"), 400, "BAD_USER_INPUT"},
	}
	for _, c := range cases {
		require.Equal(t, c.status, c.resp.Status, "%s: %+v", c.name, c.resp.Errors)
		require.NotEmpty(t, c.resp.Errors, c.name)
		if c.code != "" {
			require.Equal(t, c.code, c.resp.code(), "%s: %+v", c.name, c.resp.Errors)
		}
	}

	// Websockets: a foreign origin is refused at the handshake; a bad token, or no
	// connection_init at all, closes the connection.
	_, resp, err := dialWS(context.Background(), base, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	ws, _, err := dialWS(context.Background(), base, nil)
	require.NoError(t, err)
	require.NoError(t, ws.send(wsMsg{Type: "connection_init", Payload: json.RawMessage(`{"Authorization": "Bearer ` + forged + `"}`)}))
	require.Equal(t, websocket.StatusCode(4403), ws.closeCode(t))

	ws, _, err = dialWS(context.Background(), base, nil)
	require.NoError(t, err)
	require.Equal(t, websocket.StatusCode(4408), ws.closeCode(t), "no connection_init within the timeout")

	var orders int
	require.NoError(t, sys.pools[db.Order].QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&orders))
	require.Zero(t, orders, "no resolver ran")
}

// fragmentBomb spreads each of n fragments twice in the next: 2^n fields once expanded.
func fragmentBomb(n int) string {
	var b strings.Builder
	b.WriteString("query { ...F0 }")
	for i := range n {
		fmt.Fprintf(&b, " fragment F%d on Query { ...F%d ...F%d }", i, i+1, i+1)
	}
	fmt.Fprintf(&b, " fragment F%d on Query { stores { id } }", n)
	return b.String()
}

// upgrade sends a GET /graphql asking for a protocol upgrade.
func upgrade(t *testing.T, base, protocol, subprotocols string) gqlResponse {
	req, err := http.NewRequest(http.MethodGet, base+"/graphql", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", protocol)
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if subprotocols != "" {
		req.Header.Set("Sec-WebSocket-Protocol", subprotocols)
	}
	return doGQL(t, req)
}

func tokenWithSecret(t *testing.T, secret string, role model.Role) string {
	t.Helper()
	a, err := graph.NewAuth(secret)
	require.NoError(t, err)
	tok, err := a.Mint(role, "", time.Hour)
	require.NoError(t, err)
	return tok
}

// aliases is a mutation placing an order n times under n aliases: if any resolver ran, an order
// would exist.
func aliases(n int) string {
	var b strings.Builder
	b.WriteString(`mutation($i:PlaceOrderInput!){`)
	for i := range n {
		fmt.Fprintf(&b, `a%d:placeOrder(input:$i){id} `, i)
	}
	b.WriteString("}")
	return b.String()
}

func deep(n int) string {
	return "{ __schema { types { " + strings.Repeat("fields { type { ", (n-3)/2) + "name" + strings.Repeat(" } }", (n-3)/2) + " } } }"
}

func getGQL(t *testing.T, base, tok, query string) gqlResponse {
	req, err := http.NewRequest(http.MethodGet, base+"/graphql?query="+url.QueryEscape(query), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	return doGQL(t, req)
}

// 4. Two BFF replicas, a subscriber on each, one order: both see every transition exactly once,
// in order.
func TestTwoBFFReplicasBothDeliver(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	sys.start(t, db.Services...)
	a, b := sys.startBFF(t), sys.startBFF(t)
	storeID := registerStore(t, a, "강남점", "강남구")
	customer := mint(t, model.RoleCustomer, "7")
	wsA, wsB := connect(t, a, customer), connect(t, b, customer)
	wsA.subscribe(t, "a", myPageSubscription, map[string]any{"c": "7"})
	wsB.subscribe(t, "b", myPageSubscription, map[string]any{"c": "7"})

	o := placed(t, b, customer, "7", "강남구")
	sys.waitOrder(t, o.ID, "RECEIVED")
	gql(t, a, mint(t, model.RoleMaster, storeID), cookMutation, map[string]any{"id": o.ID}).decode(t, "markCooked", &struct{}{})
	rowsA, rowsB := wsA.rowsUntil(t, "DELIVERY_STARTED"), wsB.rowsUntil(t, "DELIVERY_STARTED")
	requireProgress(t, rowsA, o.ID)
	require.Equal(t, rowsA, rowsB, "both replicas deliver the same transitions")
	row, err := sys.myPage(t, o.ID)
	require.NoError(t, err)
	for i, r := range rowsA {
		require.Equal(t, int(row.Version)-len(rowsA)+1+i, r.Version, "every version up to the last, once each: %+v", rowsA)
	}
}

// 5. 1,000 concurrent subscribers on one BFF each see their own order's transitions and nothing
// else.
func TestThousandSubscribersEachSeeTheirOwn(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	registerStore(t, base, "강남점", "강남구")
	const n = 1000
	conns := make([]*wsConn, n)
	for i := range n {
		conns[i] = connect(t, base, mint(t, model.RoleCustomer, fmt.Sprint("c", i)))
		conns[i].subscribe(t, "s", myPageSubscription, map[string]any{"c": fmt.Sprint("c", i)})
	}
	waitSubscribers(t, base, n)

	agent := mint(t, model.RoleAgent, "")
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			resp := place(t, base, agent, fmt.Sprint("c", i), "강남구")
			var o gqlOrder
			if len(resp.Errors) > 0 || json.Unmarshal(resp.Data["placeOrder"], &o) != nil {
				t.Errorf("place %d: %+v", i, resp.Errors)
			}
			ids[i] = o.ID
		})
	}
	wg.Wait()
	for i, c := range conns {
		rows := c.rowsUntil(t, "RECEIVED")
		requireProgress(t, rows, ids[i])
		for _, r := range rows {
			require.Equal(t, fmt.Sprint("c", i), r.CustomerID)
		}
	}
	// Nothing else arrives for anyone: one more order for customer c0 reaches only c0.
	extra := placed(t, base, agent, "c0", "강남구")
	requireProgress(t, conns[0].rowsUntil(t, "RECEIVED"), extra.ID)
	for _, c := range conns[1:] {
		select {
		case m := <-c.msgs:
			t.Fatalf("a subscriber got a message that was not its own: %s", m.Payload)
		default:
		}
	}
}

// Production: no start without a secret; with one, no introspection and no field suggestions.
func TestProductionBFF(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, map[string]string{"PIZZA_ENV": "production"})
	err := run(context.Background(), []string{"serve", "bff"}, sys.env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "PIZZA_AUTH_SECRET")
	err = run(context.Background(), []string{"token", "--role", "admin"}, sys.env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "PIZZA_AUTH_SECRET")

	const secret = "a production secret of 32 bytes!"
	sys.env["PIZZA_AUTH_SECRET"] = secret
	sys.start(t, db.Services...)
	base := sys.startBFF(t)
	admin := tokenWithSecret(t, secret, model.RoleAdmin)
	resp := gql(t, base, admin, `{ __schema { types { name } } }`, nil)
	require.Equal(t, "BAD_USER_INPUT", resp.code(), "introspection is off: %+v", resp.Errors)
	resp = gql(t, base, admin, `{ stores { idd } }`, nil)
	require.Equal(t, "BAD_USER_INPUT", resp.code())
	require.NotContains(t, resp.Errors[0].Message, "Did you mean", "no field suggestions")
	require.Equal(t, "UNAUTHENTICATED", gql(t, base, mint(t, model.RoleAdmin, ""), `{ stores { id } }`, nil).code(),
		"a development token is worthless in production")
}

// A subscription ends, with UNAUTHENTICATED, when its token expires (after the leeway HTTP
// gives it too); responses honour the
// GraphQL-over-HTTP media type the client asks for.
func TestSubscriptionEndsWhenTheTokenExpires(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	sys.start(t, db.CustomerCenter)
	base := sys.startBFF(t)
	ws := connect(t, base, mintFor(t, model.RoleCustomer, "1", 1500*time.Millisecond))
	ws.subscribe(t, "s", myPageSubscription, map[string]any{"c": "1"})
	m := ws.next(t, 30*time.Second) // the token is good for its 1.5 s and the 5 s leeway for clock skew
	require.Contains(t, []string{"next", "error"}, m.Type)
	require.Contains(t, string(m.Payload), `"code":"UNAUTHENTICATED"`)
	require.Contains(t, string(m.Payload), `the bearer token has expired`)
	// The socket outlived its token: nothing else passes on it either.
	ws.subscribe(t, "m", `mutation { placeOrder(input: {customerId: "1", pizza: "p", qty: 1, region: "r"}) { id } }`, nil)
	for m = ws.next(t, 10*time.Second); m.Type == "complete"; m = ws.next(t, 10*time.Second) {
	}
	require.Contains(t, string(m.Payload), `"code":"UNAUTHENTICATED"`, "payload: %s", m.Payload)

	req, err := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(`{"query": "{ stores { id } }"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json")
	req.Header.Set("Authorization", "Bearer "+mint(t, model.RoleAdmin, ""))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "application/graphql-response+json; charset=utf-8", resp.Header.Get("Content-Type"))
}

// The operator's view of one order: every event, when written, published, and consumed by whom.
func TestOrderTimeline(t *testing.T) {
	t.Parallel()
	sys, base := wholeSystem(t, nil)
	storeID := registerStore(t, base, "강남점", "강남구")
	customer := mint(t, model.RoleCustomer, "1")
	o := placed(t, base, customer, "1", "강남구")
	sys.waitOrder(t, o.ID, "RECEIVED")
	gql(t, base, mint(t, model.RoleMaster, storeID), cookMutation, map[string]any{"id": o.ID}).decode(t, "markCooked", &struct{}{})

	const query = `query($id: ID!) { orderTimeline(orderId: $id) {
		eventId type producer writtenAt publishedAt publishAttempts consumed { service at } } }`
	type event struct {
		EventID, Type, Producer string
		WrittenAt               time.Time
		PublishedAt             *time.Time
		PublishAttempts         int
		Consumed                []struct {
			Service string
			At      time.Time
		}
	}
	consumers := func(e event) []string {
		var out []string
		for _, c := range e.Consumed {
			out = append(out, c.Service)
		}
		slices.Sort(out)
		return out
	}
	want := map[string][]string{
		"order.placed":         {"customercenter", "store"},
		"store.order_received": {"customercenter", "order"},
		"store.order_cooked":   {"customercenter", "delivery", "order"},
		"delivery.started":     {"customercenter", "order"},
	}
	admin := mint(t, model.RoleAdmin, "")
	var events []event
	require.Eventually(t, func() bool {
		events = nil
		resp := gql(t, base, admin, query, map[string]any{"id": o.ID})
		if len(resp.Errors) > 0 || json.Unmarshal(resp.Data["orderTimeline"], &events) != nil {
			return false
		}
		seen := 0
		for _, e := range events {
			if w, ok := want[e.Type]; ok && slices.Equal(w, consumers(e)) && e.PublishedAt != nil {
				seen++
			}
		}
		return seen == len(want)
	}, 20*time.Second, 20*time.Millisecond, "timeline: %+v", events)
	for i, e := range events {
		if i > 0 {
			require.False(t, e.WrittenAt.Before(events[i-1].WrittenAt), "in the order written")
		}
		if e.PublishedAt != nil {
			require.False(t, e.PublishedAt.Before(e.WrittenAt))
			require.GreaterOrEqual(t, e.PublishAttempts, 1)
		}
		for _, c := range e.Consumed {
			require.False(t, c.At.Before(e.WrittenAt), "%s consumed %s before it was written", c.Service, e.Type)
		}
	}
	require.Equal(t, "order", events[0].Producer)
	require.Equal(t, "order.placed", events[0].Type)
	require.Equal(t, "FORBIDDEN", gql(t, base, mint(t, model.RoleAgent, ""), query, map[string]any{"id": o.ID}).code(), "admins only")
	require.Equal(t, "FORBIDDEN", gql(t, base, customer, query, map[string]any{"id": o.ID}).code())

	// The metrics an operator watches, fed by what just happened.
	_, orderMetrics := get(t, "http://"+sys.env["ORDER_ADDR"]+"/metrics")
	for _, series := range []string{
		`pizza_http_request_duration_seconds_count{code="200",component="order",route="POST /orders"} 1`,
		`pizza_orders{status="DELIVERY_STARTED"} 1`,
		`pizza_consumer_lag_seconds_count{queue="order.events`,
		`pizza_consumer_queue_depth{queue="order.events`,
		`pizza_breaker_state{breaker="store-availability"} 0`,
		`pizza_outbox_published_total{service="order",type="order.placed"} 1`,
	} {
		require.Contains(t, orderMetrics, series)
	}
	_, bffMetrics := get(t, opsOf(t, base)+"/metrics")
	require.Contains(t, bffMetrics, `pizza_graphql_field_duration_seconds_count{field="placeOrder"} 1`)
	require.Contains(t, bffMetrics, `pizza_http_request_duration_seconds_count{code="200",component="bff",route="/graphql"}`)
}
