// Package outboxtest gives tests their own RabbitMQ names (exchange and queues deleted when the
// test ends) and a TCP proxy that can cut every connection through it, to inject broker faults.
package outboxtest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
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

// Proxy forwards TCP connections to a target and can cut them all at once.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// AMQPURL is url with its host:port replaced by the proxy's.
func (p *Proxy) AMQPURL() string { return "amqp://guest:guest@" + p.Addr() + "/" }

// Cut closes every connection through the proxy, as a network failure would; new connections
// are still accepted. It returns how many were cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
		n++
	}
	return n / 2
}

// Close stops accepting and cuts everything.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.conns[up] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src) // ends when either side closes or is cut
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
