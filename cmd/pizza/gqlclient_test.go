package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
)

// startBFF serves a BFF replica on a free port with the system's environment and returns its base
// URL (http://host:port). Its metrics are at opsOf(base).
func (sys *system) startBFF(t *testing.T) string {
	t.Helper()
	return sys.startBFFWith(t, nil)
}

// startBFFWith is startBFF with some variables of the environment replaced.
func (sys *system) startBFFWith(t *testing.T, override map[string]string) string {
	t.Helper()
	env := maps.Clone(sys.env)
	maps.Copy(env, override)
	env["PIZZA_HTTP_ADDR"] = freeAddr(t)
	env["PIZZA_OPS_ADDR"] = freeAddr(t)
	bffOps.Store("http://"+env["PIZZA_HTTP_ADDR"], "http://"+env["PIZZA_OPS_ADDR"])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "bff"}, env, io.Discard, io.Discard) }()
	base := "http://" + env["PIZZA_HTTP_ADDR"]
	require.Eventually(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK },
		20*time.Second, 10*time.Millisecond, "the BFF never became ready")
	var once sync.Once
	sys.running = append(sys.running, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve bff: %v", err)
			}
		})
	})
	return base
}

// bffOps maps the base URL of each BFF startBFF started to the base URL of its ops address.
var bffOps sync.Map

// opsOf is the base URL of the ops address (/metrics) of the BFF startBFF started at base.
func opsOf(t *testing.T, base string) string {
	t.Helper()
	ops, ok := bffOps.Load(base)
	require.True(t, ok, "no BFF was started at %s", base)
	return ops.(string)
}

// tokens mints tokens with the development secret the test system uses.
func mint(t *testing.T, role model.Role, id string) string {
	t.Helper()
	return mintFor(t, role, id, time.Hour)
}

func mintFor(t *testing.T, role model.Role, id string, ttl time.Duration) string {
	t.Helper()
	a, err := graph.NewAuth(developmentSecret)
	require.NoError(t, err)
	tok, err := a.Mint(role, id, ttl)
	require.NoError(t, err)
	return tok
}

type gqlError struct {
	Message    string
	Path       []any
	Extensions struct{ Code, Field string }
}

type gqlResponse struct {
	Status int
	Data   map[string]json.RawMessage
	Errors []gqlError
}

// code is the first error's code, or "" without errors.
func (r gqlResponse) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[0].Extensions.Code
}

// decode decodes the data field name into v, failing the test on errors.
func (r gqlResponse) decode(t *testing.T, name string, v any) {
	t.Helper()
	require.Empty(t, r.Errors, "errors: %+v", r.Errors)
	require.NoError(t, json.Unmarshal(r.Data[name], v))
}

// gql POSTs one operation with a bearer token ("" for none).
func gql(t *testing.T, base, tok, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return doGQL(t, req)
}

func doGQL(t *testing.T, req *http.Request) gqlResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out gqlResponse
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &out), "body: %s", raw)
	out.Status = resp.StatusCode
	return out
}

// wsConn is a graphql-transport-ws client.
type wsConn struct {
	conn *websocket.Conn
	msgs chan wsMsg
	done chan struct{}
	err  error // why the connection ended, once done is closed
}

type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialWS opens a websocket to the BFF with the graphql-transport-ws sub-protocol and header h.
func dialWS(ctx context.Context, base string, h http.Header) (*wsConn, *http.Response, error) {
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"},
		HTTPHeader:   h,
	})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(1 << 20)
	c := &wsConn{conn: conn, msgs: make(chan wsMsg, 256), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			var m wsMsg
			_, data, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			if err := json.Unmarshal(data, &m); err != nil {
				c.err = err
				return
			}
			if m.Type == "ping" {
				_ = c.send(wsMsg{Type: "pong"})
				continue
			}
			c.msgs <- m
		}
	}()
	return c, resp, nil
}

func (c *wsConn) send(m wsMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}

func (c *wsConn) close() { _ = c.conn.Close(websocket.StatusNormalClosure, "bye") }

// closeCode waits for the connection to end and returns the server's close code.
func (c *wsConn) closeCode(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not close the websocket")
	}
	return websocket.CloseStatus(c.err)
}

// init sends connection_init with the token and waits for the ack.
func (c *wsConn) init(t *testing.T, tok string) {
	t.Helper()
	require.NoError(t, c.send(wsMsg{Type: "connection_init", Payload: json.RawMessage(fmt.Sprintf(`{"Authorization": "Bearer %s"}`, tok))}))
	m := c.next(t, 10*time.Second)
	require.Equal(t, "connection_ack", m.Type, "payload: %s", m.Payload)
}

// connect dials and initialises a websocket for tok.
func connect(t *testing.T, base, tok string) *wsConn {
	t.Helper()
	c, _, err := dialWS(context.Background(), base, nil)
	require.NoError(t, err)
	t.Cleanup(c.close)
	c.init(t, tok)
	return c
}

const myPageSubscription = `subscription($c: ID!, $seen: [SeenVersion!]) {
	myPage(customerId: $c, seen: $seen) { id orderId customerId status rejectReason storeId deliveryId version }
}`

type myPageRow struct {
	ID, OrderID, CustomerID, Status string
	RejectReason, StoreID           *string
	DeliveryID                      *string
	Version                         int
}

func (c *wsConn) subscribe(t *testing.T, id, query string, vars map[string]any) {
	t.Helper()
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(t, err)
	require.NoError(t, c.send(wsMsg{ID: id, Type: "subscribe", Payload: payload}))
}

// next returns the next message, failing the test after within.
func (c *wsConn) next(t *testing.T, within time.Duration) wsMsg {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-c.done:
		t.Fatalf("websocket closed: %v", c.err)
	case <-time.After(within):
		t.Fatal("no websocket message in time")
	}
	return wsMsg{}
}

// pushed reads the next message as a subscription's push without errors, and returns its data's
// field.
func pushed[T any](t *testing.T, c *wsConn, field string) T {
	t.Helper()
	m := c.next(t, 15*time.Second)
	require.Equal(t, "next", m.Type, "payload: %s", m.Payload)
	var p struct {
		Data   map[string]json.RawMessage
		Errors []gqlError
	}
	require.NoError(t, json.Unmarshal(m.Payload, &p))
	require.Empty(t, p.Errors)
	var v T
	require.NoError(t, json.Unmarshal(p.Data[field], &v), "payload: %s", m.Payload)
	return v
}

// row reads the next "next" message as a myPage row.
func (c *wsConn) row(t *testing.T) myPageRow {
	t.Helper()
	r := pushed[myPageRow](t, c, "myPage")
	require.Equal(t, r.OrderID, r.ID, "a pushed row's cache key is its order's id")
	return r
}

// rowsUntil reads rows until one has status final, and returns them all.
func (c *wsConn) rowsUntil(t *testing.T, final string) []myPageRow {
	t.Helper()
	var rows []myPageRow
	for {
		r := c.row(t)
		rows = append(rows, r)
		if r.Status == final {
			return rows
		}
	}
}

func statuses(rows []myPageRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Status
	}
	return out
}
