package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// defaultExchange is the topic exchange every event is published to, routing key = event type.
const defaultExchange = "pizza.events"

// Queue types a consuming service's queue may have.
const (
	QueueClassic = "classic" // one node
	QueueQuorum  = "quorum"  // a cluster: replicated, with a broker-side delivery limit
)

// QueueSpec describes one consuming service's durable queue and the routing keys it needs.
type QueueSpec struct {
	Name string
	Keys []string
	// Type is QueueClassic or QueueQuorum (default classic).
	Type string
	// DeliveryLimit (quorum only) dead-letters a message the broker has delivered this many
	// times without an ack: the guard against a message that crashes its consumer every time.
	DeliveryLimit int
}

// DLQ is the name of the queue's dead-letter queue.
func (q QueueSpec) DLQ() string { return q.Name + ".dlq" }

func (q QueueSpec) queueType() string {
	if q.Type == "" {
		return QueueClassic
	}
	return q.Type
}

func declareExchange(ch *amqp.Channel, exchange string) error {
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	return nil
}

// declareQueue declares the exchange, the queue's DLQ, the queue (dead-lettering into its DLQ)
// and its bindings. It is idempotent; a queue that exists with other arguments (say, classic
// where quorum is configured) is an error naming both.
func declareQueue(ch *amqp.Channel, exchange string, q QueueSpec) error {
	switch q.queueType() {
	case QueueClassic, QueueQuorum:
	default:
		return fmt.Errorf("queue %s: type %q is neither %q nor %q", q.Name, q.Type, QueueClassic, QueueQuorum)
	}
	if err := declareExchange(ch, exchange); err != nil {
		return err
	}
	typ := amqp.Table{amqp.QueueTypeArg: q.queueType()}
	if _, err := ch.QueueDeclare(q.DLQ(), true, false, false, false, typ); err != nil {
		return fmt.Errorf("declare %s: %w", q.DLQ(), err)
	}
	args := amqp.Table{
		amqp.QueueTypeArg:           q.queueType(),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": q.DLQ(),
	}
	if q.queueType() == QueueQuorum && q.DeliveryLimit > 0 {
		args["x-delivery-limit"] = q.DeliveryLimit
	}
	if _, err := ch.QueueDeclare(q.Name, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s as %s (an existing queue with other arguments must be deleted first): %w",
			q.Name, q.queueType(), err)
	}
	for _, key := range q.Keys {
		if err := ch.QueueBind(q.Name, key, exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", q.Name, key, err)
		}
	}
	return nil
}

// backoff yields growing, jittered waits between reconnect attempts.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.min << min(b.n, 16)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx is done, reporting whether the full wait happened.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dialLoop dials url until it succeeds or ctx ends, logging each failure once per attempt. It
// returns the connection and its socket, which the caller may cork.
func dialLoop(ctx context.Context, url, name string, logger *slog.Logger) (*amqp.Connection, *corkConn, error) {
	b := backoff{min: 50 * time.Millisecond, max: 5 * time.Second}
	for {
		var sock *corkConn
		conn, err := amqp.DialConfig(url, amqp.Config{
			Heartbeat:  10 * time.Second,
			Properties: amqp.Table{"connection_name": name},
			Dial: func(network, addr string) (net.Conn, error) {
				c, err := dial(network, addr)
				if err == nil {
					sock = c.(*corkConn)
				}
				return c, err
			},
		})
		if err == nil {
			return conn, sock, nil
		}
		wait := b.next()
		logger.WarnContext(ctx, "rabbitmq unreachable, retrying", "connection", name, "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil, nil, errors.Join(ctx.Err(), err)
		}
	}
}

// writeTimeout bounds one socket write: a stalled network fails the connection (and so what is in
// flight on it) instead of hanging every publisher behind the write.
const writeTimeout = 10 * time.Second

// corkConn is a broker connection's socket. Each write has a deadline (writeTimeout). While
// corked, writes are gathered and sent as one when uncorked: amqp091 flushes every message
// on its own, so a batch of publishes would otherwise cost a system call (and a packet for the
// broker to read) each.
type corkConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error // a failed uncorked write: the connection is broken

	writes atomic.Int64 // system calls made, for tests
}

// dial is amqp.Config.Dial: a corkable socket (a *corkConn) whose writes time out.
func dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

func (c *corkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked {
		c.buf = append(c.buf, b...)
		return len(b), nil
	}
	return c.write(b)
}

func (c *corkConn) write(b []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return 0, err
	}
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// Cork holds writes until Uncork. Between the two the caller must not wait on anything the broker
// sends: what it wrote has not left yet.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork sends what was held. A failed write closes the socket, so the library sees the
// connection end and fails what was in flight on it (the publisher then retries elsewhere).
func (c *corkConn) Uncork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 || c.err != nil {
		c.buf = c.buf[:0]
		return
	}
	if _, err := c.write(c.buf); err != nil {
		c.err = err
		_ = c.Conn.Close()
	}
	if cap(c.buf) > 1<<20 {
		c.buf = nil // do not keep a burst's buffer for ever
	} else {
		c.buf = c.buf[:0]
	}
}
