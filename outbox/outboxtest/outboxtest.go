// Package outboxtest gives tests their own RabbitMQ names (exchange and queues deleted when the
// test ends) and a TCP proxy that can cut every connection through it or stop and start again, to
// inject broker and database faults.
package outboxtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// DefaultURL is where tests find RabbitMQ unless AMQP_URL says otherwise.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// QueueDepth is the number of ready messages in queue.
func QueueDepth(t testing.TB, queue string) int {
	t.Helper()
	conn, err := amqp.Dial(URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

// URL is the broker the tests use.
func URL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Names are one test's broker names.
type Names struct {
	Exchange string
	suffix   string
}

// Suffix is what Queue appends to a base name: for configurations that name queues themselves
// (PIZZA_QUEUE_SUFFIX). Register each such queue with Queue for its deletion.
func (n Names) Suffix() string { return "." + n.suffix }

// Queue returns a queue name unique to the test; it and its DLQ are deleted when the test ends.
func (n Names) Queue(base string) string {
	q := base + "." + n.suffix
	queuesMu.Lock()
	defer queuesMu.Unlock()
	queues[n.suffix] = append(queues[n.suffix], q, q+".dlq")
	return q
}

// NewNames returns an exchange and queue-name suffix unique to the test, and deletes the
// exchange and every queue made with Queue (and their DLQs) when the test ends.
func NewNames(t testing.TB) Names {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	n := Names{suffix: "t" + hex.EncodeToString(b)}
	n.Exchange = "pizza.events." + n.suffix
	t.Cleanup(func() { deleteAll(t, n) })
	return n
}

var (
	queuesMu sync.Mutex
	queues   = map[string][]string{} // suffix -> queues to delete
)

func deleteAll(t testing.TB, n Names) {
	conn, err := amqp.Dial(URL())
	if err != nil {
		t.Logf("cleanup: dial rabbitmq: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	queuesMu.Lock()
	qs := queues[n.suffix]
	delete(queues, n.suffix)
	queuesMu.Unlock()
	for _, q := range qs {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			// A failed delete closes the channel; open another for the rest.
			if ch, err = conn.Channel(); err != nil {
				return
			}
		}
	}
	_ = ch.ExchangeDelete(n.Exchange, false, false)
}

// Proxy forwards TCP connections to a target (RabbitMQ, PostgreSQL) and injects network faults:
// Cut breaks the connections through it, Stop takes it away altogether (connections cut, new ones
// refused) until Start brings it back on the same port.
type Proxy struct {
	target string
	addr   string // fixed at the first listen: Start listens here again

	gateMu sync.Mutex
	gate   chan struct{} // closed while bytes may pass (see Blackhole)

	mu     sync.Mutex
	ln     net.Listener // nil while stopped
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// AMQPURL is url with its host:port replaced by the proxy's.
func (p *Proxy) AMQPURL() string { return "amqp://guest:guest@" + p.Addr() + "/" }

// URL is rawURL (a postgres:// or amqp:// URL) with its host:port replaced by the proxy's.
func (p *Proxy) URL(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	u.Host = p.Addr()
	return u.String()
}

// Cut closes every connection through the proxy, as a network failure would; new connections
// are still accepted. It returns how many were cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut()
}

func (p *Proxy) cut() int {
	n := 0
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
		n++
	}
	return n / 2
}

// Stop takes the target away: the listener closes (connections are refused) and every
// connection through it is cut. Start brings it back.
func (p *Proxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	p.cut()
}

// Start listens again on the proxy's port after Stop (a no-op while it runs). It retries for a
// few seconds should the port still be held.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy closed")
	}
	if p.ln != nil {
		return nil
	}
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // the port is taken; it is free again within moments
	}
}

// Close stops accepting and cuts everything, for good.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Blackhole(false) // pipes held at the gate go on, and end on their cut connections
	p.Stop()
	p.wg.Wait()
}

// serve accepts on ln until it closes; p.mu is held or p not yet shared.
func (p *Proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go p.accept(ln)
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed || p.ln != ln { // stopped while dialling
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.conns[up] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// Blackhole stops every byte through the proxy while on, either way, and lets them through
// again when off: as a partition between two TCP peers (connections stay open, new ones are
// accepted, nothing moves), which they learn of only by their own timeouts and heartbeats. What
// was sent meanwhile arrives once it heals, as TCP's retransmissions would bring it.
func (p *Proxy) Blackhole(on bool) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
		close(p.gate)
	}
	select {
	case <-p.gate: // open
		if on {
			p.gate = make(chan struct{})
		}
	default: // shut
		if !on {
			close(p.gate)
		}
	}
}

// passable returns a channel closed while bytes may pass.
func (p *Proxy) passable() <-chan struct{} {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
		close(p.gate)
	}
	return p.gate
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for { // ends when either side closes or is cut
		n, err := src.Read(buf)
		if n > 0 {
			<-p.passable() // held here while blackholed (a cut closes dst, and the write fails)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
