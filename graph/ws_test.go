package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
)

// The websocket transport on its own: a BFF handler with a hub and no backends (a subscription
// without seen calls none), fed by hub.Publish as the listener would.
type wsFixture struct {
	url      string
	hub      *Hub
	auth     *Auth
	shutdown context.CancelFunc
}

func newWSFixture(t *testing.T, keepAlive time.Duration) *wsFixture {
	t.Helper()
	return newWSFixtureOver(t, Backends{}, keepAlive)
}

// newWSFixtureOver is newWSFixture over be.
func newWSFixtureOver(t *testing.T, be Backends, keepAlive time.Duration) *wsFixture {
	t.Helper()
	auth, err := NewAuth("a secret of sixteen bytes or more")
	require.NoError(t, err)
	hub := NewHub(8, time.Second, slog.New(slog.DiscardHandler))
	t.Cleanup(hub.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := httptest.NewServer(NewHandler(ServerConfig{Context: ctx, InitTimeout: 2 * time.Second, KeepAlive: keepAlive},
		auth, be, hub))
	t.Cleanup(srv.Close)
	return &wsFixture{url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/graphql", hub: hub, auth: auth, shutdown: cancel}
}

type testWS struct {
	t    *testing.T
	conn *websocket.Conn
}

func (f *wsFixture) dial(t *testing.T) *testWS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, f.url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return &testWS{t: t, conn: conn}
}

// connect dials and initialises a socket for customer id.
func (f *wsFixture) connect(t *testing.T, customerID string) *testWS {
	t.Helper()
	tok, err := f.auth.Mint(model.RoleCustomer, customerID, time.Hour)
	require.NoError(t, err)
	return f.connectWith(t, tok)
}

// connectWith dials and initialises a socket with token tok.
func (f *wsFixture) connectWith(t *testing.T, tok string) *testWS {
	t.Helper()
	ws := f.dial(t)
	ws.send(wsMessage{Type: "connection_init", Payload: json.RawMessage(`{"Authorization":"Bearer ` + tok + `"}`)})
	require.Equal(t, "connection_ack", ws.read().Type)
	return ws
}

func (ws *testWS) send(m wsMessage) {
	ws.t.Helper()
	b, err := json.Marshal(m)
	require.NoError(ws.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(ws.t, ws.conn.Write(ctx, websocket.MessageText, b))
}

func (ws *testWS) subscribe(id, customerID string) {
	ws.t.Helper()
	ws.subscribeTo(id, `subscription($c: ID!) { myPage(customerId: $c) { orderId status version } }`, map[string]any{"c": customerID})
}

// subscribeTo starts operation id: query with vars.
func (ws *testWS) subscribeTo(id, query string, vars map[string]any) {
	ws.t.Helper()
	q, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(ws.t, err)
	ws.send(wsMessage{ID: id, Type: "subscribe", Payload: q})
}

func (ws *testWS) read() wsMessage {
	ws.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.conn.Read(ctx)
	require.NoError(ws.t, err)
	var m wsMessage
	require.NoError(ws.t, json.Unmarshal(b, &m), "%s", b)
	return m
}

// closed waits for the server to end the socket and returns its close code (-1 without one).
func (ws *testWS) closed() websocket.StatusCode {
	ws.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.conn.Read(ctx); err != nil {
			require.NoError(ws.t, ctx.Err(), "the server did not close the socket")
			return websocket.CloseStatus(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, time.Millisecond, "waiting for %s", what)
}

// An idle subscription costs its connection one goroutine, the reader; a push is rendered with the
// client's selection and reaches only its own customer.
func TestIdleSubscriptionsHoldOnlyTheirReader(t *testing.T) {
	f := newWSFixture(t, time.Minute)
	const n = 200
	before := runtime.NumGoroutine()
	clients := make([]*testWS, n)
	for i := range clients {
		clients[i] = f.connect(t, fmt.Sprint("c-", i))
		clients[i].subscribe("s", fmt.Sprint("c-", i))
	}
	waitFor(t, "every subscription", func() bool { return f.hub.Subscribers() == n })
	grown := runtime.NumGoroutine() - before
	require.LessOrEqual(t, grown, n+n/10, "one reader per connection, nothing per subscription")

	for i := range clients {
		f.hub.Publish(update(t, fmt.Sprint("o-", i), fmt.Sprint("c-", i), 1, lifecycle.Received))
	}
	for i, c := range clients {
		m := c.read()
		require.Equal(t, "next", m.Type)
		require.Equal(t, "s", m.ID)
		require.JSONEq(t, fmt.Sprintf(`{"data":{"myPage":{"orderId":"o-%d","status":"RECEIVED","version":1}}}`, i), string(m.Payload))
	}
}

// The protocol's rules, each with its close code.
func TestWebsocketProtocolErrors(t *testing.T) {
	t.Parallel()
	f := newWSFixture(t, time.Minute)

	ws := f.dial(t)
	ws.subscribe("s", "c-1")
	require.Equal(t, websocket.StatusCode(closeUnauthorized), ws.closed(), "subscribe before connection_init")

	ws = f.connect(t, "c-1")
	ws.send(wsMessage{Type: "connection_init"})
	require.Equal(t, websocket.StatusCode(closeTooManyInitialise), ws.closed())

	ws = f.connect(t, "c-1")
	ws.subscribe("s", "c-1")
	ws.subscribe("s", "c-1")
	require.Equal(t, websocket.StatusCode(closeSubscriberExists), ws.closed())

	ws = f.connect(t, "c-1")
	require.NoError(t, ws.conn.Write(context.Background(), websocket.MessageText, []byte(`{"type":`)))
	require.Equal(t, websocket.StatusCode(closeBadRequest), ws.closed())

	ws = f.connect(t, "c-1")
	ws.send(wsMessage{ID: "s", Type: "subscribe", Payload: json.RawMessage(`["not", "a", "request"]`)})
	require.Equal(t, websocket.StatusCode(closeBadRequest), ws.closed(), "a subscribe payload that is no request")

	ws = f.connect(t, "c-1")
	ws.send(wsMessage{Type: "next", ID: "x"})
	require.Equal(t, websocket.StatusCode(closeBadRequest), ws.closed(), "a server message from the client")

	ws = f.dial(t)
	ws.send(wsMessage{Type: "connection_init", Payload: json.RawMessage(`{"Authorization":"Bearer nonsense"}`)})
	require.Equal(t, websocket.StatusCode(closeForbidden), ws.closed())

	// Errors in an operation end the operation, not the socket.
	ws = f.connect(t, "c-1")
	ws.send(wsMessage{ID: "bad", Type: "subscribe", Payload: json.RawMessage(`{"query": "subscription { nope }"}`)})
	m := ws.read()
	require.Equal(t, "error", m.Type)
	require.Equal(t, "bad", m.ID)
	require.Contains(t, string(m.Payload), `"code":"BAD_USER_INPUT"`)
	ws.subscribe("other", "c-2")
	m = ws.read()
	require.Equal(t, "next", m.Type, "another customer's page: the resolver refuses, the stream never starts")
	require.Contains(t, string(m.Payload), `"code":"FORBIDDEN"`)
	require.Equal(t, "complete", ws.read().Type)
}

// Pings are answered with their payload; a completed subscription sends nothing more; a query
// gets its answer and complete; shutting the server down closes sockets with 1001.
func TestWebsocketLifecycle(t *testing.T) {
	t.Parallel()
	f := newWSFixture(t, time.Minute)
	ws := f.connect(t, "c-1")
	ws.send(wsMessage{Type: "ping", Payload: json.RawMessage(`{"n":1}`)})
	m := ws.read()
	require.Equal(t, "pong", m.Type)
	require.JSONEq(t, `{"n":1}`, string(m.Payload))

	ws.subscribe("s", "c-1")
	waitFor(t, "the subscription", func() bool { return f.hub.Subscribers() == 1 })
	ws.send(wsMessage{ID: "s", Type: "complete"})
	waitFor(t, "the unsubscription", func() bool { return f.hub.Subscribers() == 0 })
	f.hub.Publish(update(t, "o-1", "c-1", 1, lifecycle.Received))
	ws.send(wsMessage{Type: "ping"})
	require.Equal(t, "pong", ws.read().Type, "nothing was pushed for the completed subscription")

	ws.send(wsMessage{ID: "q", Type: "subscribe", Payload: json.RawMessage(`{"query": "{ __typename }"}`)})
	m = ws.read()
	require.Equal(t, "next", m.Type)
	require.JSONEq(t, `{"data":{"__typename":"Query"}}`, string(m.Payload))
	m = ws.read()
	require.Equal(t, "complete", m.Type)
	require.Equal(t, "q", m.ID)

	ws.subscribe("s2", "c-1")
	waitFor(t, "the second subscription", func() bool { return f.hub.Subscribers() == 1 })
	f.shutdown()
	require.Equal(t, websocket.StatusGoingAway, ws.closed())
	waitFor(t, "the subscription to end with its socket", func() bool { return f.hub.Subscribers() == 0 })
}

// The server pings at the keep-alive interval; a client that does not answer is disconnected,
// one that does stays.
func TestWebsocketKeepAlive(t *testing.T) {
	t.Parallel()
	// A client has two intervals to answer. 100 ms (200 ms to answer) dropped the polite client
	// too on a loaded machine (broken pipe on its pong): an interval of a second keeps the test
	// about the protocol, not about how fast this machine schedules a goroutine.
	f := newWSFixture(t, time.Second)
	silent, polite := f.connect(t, "c-1"), f.connect(t, "c-2")
	require.Equal(t, "ping", silent.read().Type)
	for range 3 { // three intervals: more than the two a silent client is given
		require.Equal(t, "ping", polite.read().Type)
		polite.send(wsMessage{Type: "pong"})
	}
	require.Equal(t, websocket.StatusCode(-1), silent.closed(), "dropped without a close frame")
	polite.send(wsMessage{Type: "ping"})
	for m := polite.read(); m.Type != "pong"; m = polite.read() {
		require.Equal(t, "ping", m.Type)
		polite.send(wsMessage{Type: "pong"})
	}
}

// A socket runs at most MaxSocketOperations operations (100 by default): one more gets an error
// for its id, and the socket and its subscriptions go on; completing one makes room.
func TestWebsocketOperationsAreCapped(t *testing.T) {
	t.Parallel()
	f := newWSFixture(t, time.Minute)
	ws := f.connect(t, "c-1")
	for i := range 100 {
		ws.subscribe(fmt.Sprint("s", i), "c-1")
	}
	waitFor(t, "100 subscriptions", func() bool { return f.hub.Subscribers() == 100 })
	ws.subscribe("one-too-many", "c-1")
	m := ws.read()
	require.Equal(t, "error", m.Type)
	require.Equal(t, "one-too-many", m.ID)
	require.Contains(t, string(m.Payload), `"code":"BAD_USER_INPUT"`)
	require.Contains(t, string(m.Payload), "at most 100 operations may run on one websocket")

	f.hub.Publish(update(t, "o-1", "c-1", 1, lifecycle.Received))
	for range 100 {
		require.Equal(t, "next", ws.read().Type, "the socket's subscriptions go on")
	}
	ws.send(wsMessage{ID: "s0", Type: "complete"})
	waitFor(t, "the completion", func() bool { return f.hub.Subscribers() == 99 })
	ws.subscribe("one-more", "c-1")
	waitFor(t, "the new subscription", func() bool { return f.hub.Subscribers() == 100 })
}
