package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/1588-pizza/pizza/errs"
	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// wsTransport serves GraphQL over WebSocket with the graphql-transport-ws protocol
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md).
//
// It replaces gqlgen's websocket transport for memory, because a BFF holds one socket per open
// app: gqlgen's keeps four goroutines and 8 KiB of buffers per connection and a goroutine per
// subscription. Here a connection is one goroutine (its reader, which parks in the poller) and a
// 512-byte read buffer; write buffers are pooled. A subscription whose resolver hands over a
// pushStream (myPage does) holds no goroutine while idle: each update wakes a short-lived one that
// renders it with gqlgen's executor and writes it. Other operations run on a goroutine each.
type wsTransport struct {
	upgrader    websocket.Upgrader
	auth        *Auth
	base        context.Context // ends every websocket when done
	initTimeout time.Duration
	keepAlive   time.Duration
	readLimit   int64
	maxOps      int // running operations per socket
	logger      *slog.Logger
}

// The close codes of graphql-transport-ws.
const (
	closeBadRequest        = 4400
	closeUnauthorized      = 4401
	closeForbidden         = 4403
	closeInitTimeout       = 4408
	closeSubscriberExists  = 4409
	closeTooManyInitialise = 4429
)

// wsWriteTimeout bounds one write to a client; a client that does not read for that long is
// disconnected (its subscriptions resume elsewhere with seen).
const wsWriteTimeout = 10 * time.Second

func newWSTransport(base context.Context, auth *Auth, allowedOrigins []string, initTimeout, keepAlive time.Duration,
	readLimit int64, maxOps int, logger *slog.Logger) *wsTransport {
	return &wsTransport{
		upgrader: websocket.Upgrader{
			ReadBufferSize:  512,
			WriteBufferPool: &sync.Pool{},
			Subprotocols:    []string{"graphql-transport-ws"},
			CheckOrigin:     func(r *http.Request) bool { return originAllowed(r, allowedOrigins) },
			Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
				writeGraphQLError(w, r, status, errs.BadUserInput, reason.Error())
			},
		},
		auth: auth, base: base, initTimeout: initTimeout, keepAlive: keepAlive, readLimit: readLimit, maxOps: maxOps,
		logger: logger,
	}
}

// originAllowed admits requests without an Origin (not from a browser), from the server's own
// host, and from hosts matching one of the patterns ("app.example.com", "*.example.com").
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

func (t *wsTransport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// Do upgrades the request and hands the socket to its own goroutine, so the HTTP handler returns
// and net/http lets go of the request and its buffers.
func (t *wsTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ws, err := t.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	ws.SetReadLimit(t.readLimit)
	c := &wsConn{t: t, exec: exec, ws: ws, ops: map[string]*wsOperation{}}
	c.ctx = context.WithValue(context.Background(), methodKey{}, methodWebsocket)
	c.stopShutdown = context.AfterFunc(t.base, func() { c.closeWith(websocket.CloseGoingAway, "server shutting down") })
	go c.serve()
}

// wsConn is one client's socket.
type wsConn struct {
	t            *wsTransport
	exec         graphql.GraphExecutor
	ws           *websocket.Conn
	ctx          context.Context // the viewer, once connection_init is accepted; read only by the reader
	stopShutdown func() bool
	initialised  bool // read only by the reader

	wmu sync.Mutex // one writer at a time

	mu     sync.Mutex
	ops    map[string]*wsOperation // by the client's id
	pinger *time.Timer
	closed bool
}

// wsMessage is a graphql-transport-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// serve reads the client's messages until the socket ends, then ends its operations.
func (c *wsConn) serve() {
	defer c.close()
	_ = c.ws.SetReadDeadline(time.Now().Add(c.t.initTimeout))
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			var ne net.Error
			if !c.initialised && errors.As(err, &ne) && ne.Timeout() {
				c.closeWith(closeInitTimeout, "Connection initialisation timeout")
			}
			return // the client left, or stopped answering pings: nobody to tell
		}
		if c.initialised { // a live client answers every ping within the interval
			_ = c.ws.SetReadDeadline(time.Now().Add(2 * c.t.keepAlive))
		}
		var m wsMessage
		if err := json.Unmarshal(data, &m); err != nil {
			c.closeWith(closeBadRequest, "Invalid message received")
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// handle acts on one message; false ends the connection.
func (c *wsConn) handle(m wsMessage) bool {
	switch m.Type {
	case "connection_init":
		if c.initialised {
			c.closeWith(closeTooManyInitialise, "Too many initialisation requests")
			return false
		}
		var p map[string]any
		_ = json.Unmarshal(m.Payload, &p)
		token, _ := p["Authorization"].(string)
		if token == "" {
			token, _ = p["authorization"].(string)
		}
		claims, err := c.t.auth.FromHeader(token)
		if claims == nil { // graphql-transport-ws refuses with 4403; the reason is HTTP's message
			reason := reasonNoToken
			if err != nil {
				reason = err.Error()
			}
			c.closeWith(closeForbidden, closeReason(reason))
			return false
		}
		c.ctx, c.initialised = withViewer(c.ctx, claims), true
		_ = c.ws.SetReadDeadline(time.Now().Add(2 * c.t.keepAlive))
		if c.send(wsMessage{Type: "connection_ack"}) != nil {
			return false
		}
		c.mu.Lock()
		if !c.closed {
			c.pinger = time.AfterFunc(c.t.keepAlive, c.ping)
		}
		c.mu.Unlock()
	case "ping":
		return c.send(wsMessage{Type: "pong", Payload: m.Payload}) == nil
	case "pong":
	case "subscribe":
		if !c.initialised {
			c.closeWith(closeUnauthorized, "Unauthorized")
			return false
		}
		if m.ID == "" {
			c.closeWith(closeBadRequest, "subscribe needs an id")
			return false
		}
		return c.start(m.ID, m.Payload)
	case "complete":
		c.mu.Lock()
		op := c.ops[m.ID]
		delete(c.ops, m.ID)
		c.mu.Unlock()
		if op != nil { // the client is done with it: nothing more is sent for this id
			c.wmu.Lock() // not even a frame being written now (sendNext checks under this lock)
			op.cancel()
			c.wmu.Unlock()
		}
	default:
		c.closeWith(closeBadRequest, "Invalid message received")
		return false
	}
	return true
}

// ping keeps the connection observed: a client that stops answering is closed by its read
// deadline.
func (c *wsConn) ping() {
	if c.send(wsMessage{Type: "ping"}) != nil {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.pinger.Reset(c.t.keepAlive)
	}
	c.mu.Unlock()
}

// start registers a subscribe message's operation and runs it on a goroutine of its own, so the
// reader stays small and answers pings while a resolver works. A socket already running maxOps
// operations gets an error for this one instead (the socket and its other operations go on).
func (c *wsConn) start(id string, payload json.RawMessage) bool {
	quoted, _ := json.Marshal(id)
	op := &wsOperation{c: c, id: id, quotedID: quoted}
	op.ctx, op.cancel = context.WithCancel(c.ctx)
	c.mu.Lock()
	_, dup := c.ops[id]
	full := len(c.ops) >= c.t.maxOps
	if !dup && !full && !c.closed {
		c.ops[id] = op
	}
	c.mu.Unlock()
	if dup {
		op.cancel()
		c.closeWith(closeSubscriberExists, "Subscriber for "+id+" already exists")
		return false
	}
	if full {
		op.cancel()
		return op.sendFrame("error", gqlerror.List{coded(errs.BadUserInput,
			"at most %d operations may run on one websocket; complete one first", c.t.maxOps)}) == nil
	}
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		c.mu.Lock()
		delete(c.ops, id)
		c.mu.Unlock()
		op.cancel()
		c.closeWith(closeBadRequest, "Invalid subscribe payload")
		return false
	}
	go op.run(params, graphql.Now())
	return true
}

// run parses, validates and executes the operation. A query or mutation sends its one response;
// a subscription whose resolver hands over a pushStream is then driven by wakes alone.
func (op *wsOperation) run(params *graphql.RawParams, begin time.Time) {
	defer op.recoverPanic()
	exec := op.c.exec
	ctx := graphql.StartOperationTrace(op.ctx)
	params.ReadTime = graphql.TraceTiming{Start: begin, End: graphql.Now()}
	rc, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		op.fail(exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs).Errors)
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	if rc.Operation.Operation == ast.Subscription {
		ctx = context.WithValue(ctx, streamSinkKey{}, op)
	}
	responses, rctx := exec.DispatchOperation(ctx, rc)
	op.mu.Lock()
	op.responses, op.rctx = responses, rctx
	pushed := op.stream != nil
	op.draining = pushed
	op.mu.Unlock()
	if pushed {
		op.drain() // what the stream holds already (a replay); then only wakes drain it
		return
	}
	for { // a query, a mutation, or a subscription that failed at its start
		resp := responses(rctx)
		if resp == nil {
			op.finish(nil)
			return
		}
		if op.sendNext(resp) != nil {
			return
		}
	}
}

// send writes one message.
func (c *wsConn) send(m wsMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.write(func(w *websocket.Conn) error { return w.WriteMessage(websocket.TextMessage, b) })
}

// write runs one write under the write lock and its deadline; a failed write ends the
// connection.
func (c *wsConn) write(f func(*websocket.Conn) error) error {
	c.wmu.Lock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	err := f(c.ws)
	c.wmu.Unlock()
	if err != nil {
		_ = c.ws.Close() // the reader then ends the operations
	}
	return err
}

// closeReason fits reason into a close frame (123 bytes), cutting it at a character boundary.
func closeReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	cut := maxCloseReason - len("...")
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + "..."
}

const maxCloseReason = 123

// closeWith sends a close frame with code and reason, and closes the socket.
func (c *wsConn) closeWith(code int, reason string) {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// close ends the connection's operations and its socket; the reader calls it on its way out.
func (c *wsConn) close() {
	c.mu.Lock()
	c.closed = true
	ops := c.ops
	c.ops = nil
	if c.pinger != nil {
		c.pinger.Stop()
	}
	c.mu.Unlock()
	for _, op := range ops {
		op.cancel()
	}
	c.stopShutdown()
	_ = c.ws.Close()
}

// wsOperation is one subscribe message's operation.
type wsOperation struct {
	c        *wsConn
	id       string
	quotedID []byte // the id as a JSON string
	ctx      context.Context
	cancel   context.CancelFunc

	mu        sync.Mutex
	stream    pushStream
	responses graphql.ResponseHandler
	rctx      context.Context
	draining  bool // a goroutine is draining the stream
	again     bool // woken while draining: look once more
}

// pushStream is a subscription that feeds the channel its resolver returned only when the
// transport asks, so that an idle one needs no goroutine. The resolver hands it over with the
// streamSink it finds in its context, and calls the wake function it gets back whenever the stream
// has something new: an item, or its end.
type pushStream interface {
	// fill puts the next item into the channel, or closes the channel when the stream is over,
	// and reports whether it did; false means there is nothing yet. Never called concurrently.
	fill() bool
	// failure is why the stream ended, or nil when it just ended.
	failure() *gqlerror.Error
}

// streamSink is what a transport that drives pushStreams lends a subscription resolver.
type streamSink interface {
	attach(pushStream) (wake func())
}

type streamSinkKey struct{}

func sinkFrom(ctx context.Context) streamSink {
	s, _ := ctx.Value(streamSinkKey{}).(streamSink)
	return s
}

func (op *wsOperation) attach(s pushStream) func() {
	op.mu.Lock()
	op.stream = s
	op.mu.Unlock()
	return op.wake
}

// wake makes sure a goroutine drains the stream; it never blocks.
func (op *wsOperation) wake() {
	op.mu.Lock()
	if op.draining || op.responses == nil { // the drain under way, or the first one, will look
		op.again = true
		op.mu.Unlock()
		return
	}
	op.draining = true
	op.mu.Unlock()
	go func() {
		defer op.recoverPanic()
		op.drain()
	}()
}

// recoverPanic ends the operation with INTERNAL when rendering or resolving panicked (gqlgen
// recovers resolvers' panics; this catches the rest), instead of taking the BFF down.
func (op *wsOperation) recoverPanic() {
	if r := recover(); r != nil {
		op.c.t.logger.Error("websocket operation panicked", "panic", r, "stack", string(debug.Stack()))
		op.finish(coded(errs.Internal, "internal error"))
	}
}

// drain renders and sends what the stream holds, then lets the goroutine go.
func (op *wsOperation) drain() {
	for {
		for op.stream.fill() {
			resp := op.responses(op.rctx)
			if resp == nil {
				op.finish(op.stream.failure())
				return
			}
			if op.sendNext(resp) != nil {
				return
			}
		}
		op.mu.Lock()
		if !op.again {
			op.draining = false
			op.mu.Unlock()
			return
		}
		op.again = false
		op.mu.Unlock()
	}
}

// finish ends the operation: complete, or error when it failed; nothing when the client ended
// it or the connection is closing.
func (op *wsOperation) finish(failure *gqlerror.Error) {
	if failure == nil {
		op.end(func() { _ = op.sendFrame("complete", nil) })
		return
	}
	op.fail(gqlerror.List{failure}) // our own coded errors: already what the presenter would make
}

// fail ends the operation with errors (already presented).
func (op *wsOperation) fail(errs gqlerror.List) {
	op.end(func() { _ = op.sendFrame("error", errs) })
}

// end forgets the operation and, unless the client or the connection ended it, says so with last.
func (op *wsOperation) end(last func()) {
	c := op.c
	c.mu.Lock()
	if c.ops[op.id] == op {
		delete(c.ops, op.id)
	}
	c.mu.Unlock()
	ended := op.ctx.Err() != nil
	op.cancel()
	if !ended {
		last()
	}
}

func (op *wsOperation) sendNext(resp *graphql.Response) error {
	if resp.Errors == nil && resp.Extensions == nil && resp.Label == "" && resp.Path == nil && resp.HasNext == nil &&
		len(resp.Data) > 0 {
		return op.sendFrame("next", dataOnly(resp.Data)) // the common push: no second pass over the data
	}
	return op.sendFrame("next", resp)
}

// dataOnly writes {"data":…} around data that gqlgen rendered (valid JSON already).
type dataOnly json.RawMessage

func (d dataOnly) writeTo(w io.Writer) error {
	_, _ = w.Write([]byte(`{"data":`))
	_, _ = w.Write(d)
	_, err := w.Write([]byte(`}`))
	return err
}

// sendFrame writes {"id":…,"type":…,"payload":…} straight into the socket's pooled buffer. A
// next is not sent once the operation ended (the client completed it: it may reuse the id).
func (op *wsOperation) sendFrame(typ string, payload any) error {
	return op.c.write(func(ws *websocket.Conn) error {
		if typ == "next" && op.ctx.Err() != nil {
			return nil
		}
		w, err := ws.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		_, _ = w.Write([]byte(`{"id":`))
		_, _ = w.Write(op.quotedID)
		_, _ = w.Write([]byte(`,"type":"` + typ + `"`))
		if payload != nil {
			_, _ = w.Write([]byte(`,"payload":`))
			var err error
			if d, ok := payload.(dataOnly); ok {
				err = d.writeTo(w)
			} else {
				err = json.NewEncoder(w).Encode(payload)
			}
			if err != nil {
				_ = w.Close()
				return err
			}
		}
		if _, err := w.Write([]byte(`}`)); err != nil {
			return err
		}
		return w.Close()
	})
}
