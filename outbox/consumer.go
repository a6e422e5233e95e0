package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
)

// BatchPreparer is how a service applies what it consumes: the one entry point a Consumer calls
// for each transaction. It works in two steps, so that the service's first statements travel with
// the consumer transaction's BEGIN and inbox insert, in one round trip: it queues them in b for
// all of a transaction's events, those applied before included (so they may only lock and read,
// and never fail for a duplicate), and returns the BatchHandler that applies the fresh events
// once the results of what it queued have been read. A service that needs no such statements
// queues nothing; one that applies events one at a time is adapted with EachEvent.
type BatchPreparer func(b *pgx.Batch, events []Event) BatchHandler

// BatchHandler applies several events, in their order, inside tx, the transaction that also
// records them in the inbox: what a BatchPreparer returns. Returning an error rolls both back;
// the deliveries are retried, then dead-lettered, unless the error shows the database
// unavailable (db.Unavailable) or a conflict (db.Conflict): those are retried for as long as they
// last (see Consumer). Wrap errors with %w, so they can be told. The events a handler writes
// should be written with EventContext, so each continues its cause's trace.
type BatchHandler func(ctx context.Context, tx pgx.Tx, events []Event) error

// Handler applies one event inside tx, as a BatchHandler applies several; EachEvent makes a
// BatchPreparer of it.
type Handler func(ctx context.Context, tx pgx.Tx, ev Event) error

// EachEvent is the BatchPreparer of a service that applies events one at a time: it queues
// nothing, and its handler calls h for each event in turn, in that event's trace.
func EachEvent(h Handler) BatchPreparer {
	apply := func(ctx context.Context, tx pgx.Tx, events []Event) error {
		for _, ev := range events {
			if err := h(EventContext(ctx, ev), tx, ev); err != nil {
				return err
			}
		}
		return nil
	}
	return func(*pgx.Batch, []Event) BatchHandler { return apply }
}

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	URL      string
	Exchange string // default "pizza.events"
	Queue    QueueSpec
	// Prefetch bounds unacknowledged deliveries, and Concurrency the transactions applying them
	// at once (defaults 256 and 2, the values `pizza serve` deploys).
	Prefetch    int
	Concurrency int
	// BatchSize bounds how many waiting deliveries one transaction applies (default 64; 1 turns
	// batching off). A batch never waits to fill: it takes what is already there.
	BatchSize int
	// MaxAttempts bounds how often a failing handler runs for one delivery before the delivery is
	// dead-lettered (default 5), with RetryBackoff doubling between attempts (default 50ms).
	// Attempts that fail because the database is unavailable, or on a deadlock or serialization
	// conflict, do not count: they are tried again as long as that lasts, RetryBackoff doubling
	// up to MaxRetryBackoff (default 5s).
	MaxAttempts     int
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Check, when set, refuses events that are well-formed but can mean nothing to this system
	// (an order id no order can have, say): such a message is dead-lettered as malformed at
	// once, before any handler sees it, as a body that is not an event is.
	Check   func(Event) error
	Metrics *Metrics
	Logger  *slog.Logger

	// afterCommit runs after the handler's transaction committed and before the ack: a test
	// hook for crashing there.
	afterCommit func(Event)
}

// Consumer applies the events of one durable queue to a service's database exactly once: each
// delivery runs in a transaction that first records its eventId in the inbox (a duplicate is
// skipped), commits, and only then acks. A handler failing on a healthy database is retried
// MaxAttempts times, then dead-lettered; while the database is unavailable nothing is
// dead-lettered: the deliveries wait, unacked, until it is back, and Err reports the outage.
type Consumer struct {
	cfg  ConsumerConfig
	pool *pgxpool.Pool
	// prepare queues the service's first statements for a transaction's events and returns what
	// applies them, in a consumer span per event.
	prepare BatchPreparer
	outage  outage

	mu        sync.Mutex
	connected bool

	// What Stats reports: the queue's depth as last sampled and the lag of the last event applied,
	// in nanoseconds; -1 before the first.
	depth, lag atomic.Int64
}

// Dead-letter headers on a message in a DLQ.
const (
	HeaderDLQReason   = "x-pizza-dlq-reason"
	HeaderDLQError    = "x-pizza-dlq-error"
	HeaderRoutingKey  = "x-pizza-routing-key"
	headerDLQAttempts = "x-pizza-dlq-attempts"
)

// Reasons a delivery is dead-lettered.
const (
	ReasonMalformed = "malformed"
	ReasonFailed    = "handler_failed"
)

// NewConsumer builds a consumer that applies each transaction's events with p, its first
// statements sent with the transaction's BEGIN (see BatchPreparer); Run consumes.
func NewConsumer(pool *pgxpool.Pool, cfg ConsumerConfig, p BatchPreparer) *Consumer {
	if cfg.Exchange == "" {
		cfg.Exchange = defaultExchange
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 256
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 64
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 50 * time.Millisecond
	}
	if cfg.MaxRetryBackoff <= 0 {
		cfg.MaxRetryBackoff = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{cfg: cfg, pool: pool, outage: outage{metrics: cfg.Metrics, queue: cfg.Queue.Name}}
	c.prepare = func(b *pgx.Batch, events []Event) BatchHandler {
		apply := p(b, events)
		return func(ctx context.Context, tx pgx.Tx, events []Event) error {
			return c.tracedAll(ctx, events, func(ctx context.Context) error { return apply(ctx, tx, events) })
		}
	}
	c.depth.Store(-1)
	c.lag.Store(-1)
	return c
}

// ConsumerStats are a consumer's latest numbers, as its metrics have them.
type ConsumerStats struct {
	// Queued is how many messages waited in its queue when it last looked (every few seconds);
	// -1 before it first looked.
	Queued int64
	// Lag is from the last event it applied being written to its application; -1 before the first.
	Lag time.Duration
}

// Stats returns the consumer's latest numbers.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{Queued: c.depth.Load(), Lag: time.Duration(c.lag.Load())}
}

// applied notes an event applied (not a duplicate): its lag.
func (c *Consumer) applied(ev Event) {
	lag := time.Since(ev.OccurredAt)
	c.lag.Store(int64(max(lag, 0)))
	c.cfg.Metrics.observeLag(c.cfg.Queue.Name, lag)
}

// Connected reports whether the consumer holds a live subscription now.
func (c *Consumer) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

func (c *Consumer) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
}

// Run declares the queue and consumes until ctx ends, reconnecting with backoff. On ctx's end it
// stops taking deliveries, lets the handlers in flight finish and ack, and closes the connection:
// what was prefetched and not begun returns to the queue.
func (c *Consumer) Run(ctx context.Context) error {
	b := backoff{min: 50 * time.Millisecond, max: 5 * time.Second}
	for {
		conn, _, err := dialLoop(ctx, c.cfg.URL, "pizza-consumer-"+c.cfg.Queue.Name, c.cfg.Logger)
		if err != nil {
			return nil // ctx ended while connecting
		}
		started := time.Now()
		err = c.session(ctx, conn)
		_ = conn.Close()
		c.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 10*time.Second {
			b.reset()
		}
		wait := b.next()
		c.cfg.Logger.WarnContext(ctx, "consumer lost its connection, reconnecting", "queue", c.cfg.Queue.Name, "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// session consumes on one connection until it drops or ctx ends.
func (c *Consumer) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := declareQueue(ch, c.cfg.Exchange, c.cfg.Queue); err != nil {
		return err
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	// Dead letters are published on a connection of their own: a resource alarm blocks publishing
	// connections, and the acks on this one must not stall behind it.
	dlqConn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "pizza-dlq-" + c.cfg.Queue.Name},
		Dial:       dial,
	})
	if err != nil {
		return fmt.Errorf("dead-letter connection: %w", err)
	}
	defer dlqConn.Close()
	dlq, err := dlqConn.Channel()
	if err != nil {
		return err
	}
	if err := dlq.Confirm(false); err != nil {
		return err
	}
	tag := fmt.Sprintf("pizza-%s-%d", c.cfg.Queue.Name, time.Now().UnixNano())
	deliveries, err := ch.Consume(c.cfg.Queue.Name, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Queue.Name, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	// The channel can end while the connection lives: the broker cancels the consumer (queue
	// deleted) or closes the channel (a channel error, an ack timeout). Either ends the session.
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	cancelled := ch.NotifyCancel(make(chan string, 1))
	c.setConnected(true)
	c.cfg.Logger.InfoContext(ctx, "consuming", "queue", c.cfg.Queue.Name, "keys", c.cfg.Queue.Keys)

	// Handlers run on their own context: a shutdown lets the ones in flight finish and ack.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	stopping := make(chan struct{})
	var wg sync.WaitGroup
	// One goroutine moves deliveries off the library's channel as they arrive; each worker takes
	// everything waiting (up to BatchSize) into one transaction. While the workers are busy a
	// backlog gathers, so batches grow with the load and cost no wait when it is light.
	w := newWaiting()
	acks := newAcker(ch, c.cfg.Prefetch)
	wg.Go(func() { w.fill(deliveries, stopping) })
	for range c.cfg.Concurrency {
		wg.Go(func() {
			for {
				batch := w.take(c.cfg.BatchSize, stopping)
				if batch == nil {
					return
				}
				for _, d := range c.settleBatch(hctx, acks, batch, stopping) {
					c.settleAlone(hctx, dlq, acks, d, stopping)
				}
			}
		})
	}

	if c.cfg.Metrics != nil {
		wg.Go(func() { c.sampleDepth(conn, stopping) })
	}

	var result error
	select {
	case <-ctx.Done():
		_ = ch.Cancel(tag, false)
	case e := <-closed:
		result = fmt.Errorf("connection closed: %v", e)
	case e := <-chClosed:
		result = fmt.Errorf("channel closed: %v", e)
	case tag := <-cancelled:
		result = fmt.Errorf("broker cancelled consumer %s (queue deleted?)", tag)
	}
	close(stopping)
	if c.outage.active.Load() {
		// Nothing can commit while the database is away, and an attempt on a connection that
		// hangs would hold the shutdown: end the attempts in flight, leaving their deliveries
		// unacked.
		cancelHandlers()
	}
	wg.Wait()
	return result
}

// waiting holds deliveries received and not yet taken by a worker.
type waiting struct {
	mu    sync.Mutex
	ds    []amqp.Delivery
	done  bool          // no more deliveries will come
	ready chan struct{} // holds a token while ds is not empty or done
}

func newWaiting() *waiting { return &waiting{ready: make(chan struct{}, 1)} }

func (w *waiting) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// fill receives until the channel closes or stopping.
func (w *waiting) fill(deliveries <-chan amqp.Delivery, stopping <-chan struct{}) {
	defer func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
		w.signal()
	}()
	for {
		select {
		case <-stopping:
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			w.mu.Lock()
			w.ds = append(w.ds, d)
			w.mu.Unlock()
			w.signal()
		}
	}
}

// take returns up to n waiting deliveries, blocking until there is one; nil once stopping (what
// was received and not taken stays unacked, and the broker requeues it) or when no more come.
func (w *waiting) take(n int, stopping <-chan struct{}) []amqp.Delivery {
	for {
		select { // stopping first: a shutdown begins no new delivery
		case <-stopping:
			return nil
		default:
		}
		select {
		case <-stopping:
			return nil
		case <-w.ready:
		}
		w.mu.Lock()
		k := min(n, len(w.ds))
		batch := slices.Clone(w.ds[:k])
		w.ds = slices.Delete(w.ds, 0, k)
		more, done := len(w.ds) > 0, w.done
		w.mu.Unlock()
		if more || done {
			w.signal() // wake the next worker
		}
		if k > 0 {
			return batch
		}
		if done {
			return nil
		}
	}
}

// sampleDepth reports the queue's ready messages every few seconds, on a channel of its own (a
// failed passive declare closes its channel).
func (c *Consumer) sampleDepth(conn *amqp.Connection, stopping <-chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if ch, err := conn.Channel(); err == nil {
			if q, err := ch.QueueDeclarePassive(c.cfg.Queue.Name, true, false, false, false, nil); err == nil {
				c.depth.Store(int64(q.Messages))
				c.cfg.Metrics.setDepth(c.cfg.Queue.Name, q.Messages)
			}
			_ = ch.Close()
		}
		select {
		case <-stopping:
			return
		case <-t.C:
		}
	}
}
