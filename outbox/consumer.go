package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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

// settleBatch applies several deliveries in one transaction (one commit, one WAL flush), acking
// each after the commit, and returns those it did not settle: when any handler fails, the whole
// batch rolls back and every delivery goes through settleAlone, with its retries. Malformed
// messages are dead-lettered at once. Events are applied in order-id order, so concurrent
// batches take their row locks in one order. While the database is unavailable (or the batch
// loses a conflict) the batch is tried again whole, as settleAlone does; when the consumer stops
// meanwhile, none is returned: they stay unacked.
func (c *Consumer) settleBatch(ctx context.Context, acks *acker, ds []amqp.Delivery, stopping <-chan struct{}) (rest []amqp.Delivery) {
	if len(ds) == 1 {
		return ds
	}
	type item struct {
		d  amqp.Delivery
		ev Event
	}
	items := make([]item, 0, len(ds))
	for _, d := range ds {
		ev, err := c.parse(d.Body)
		if err != nil {
			rest = append(rest, d) // settleAlone dead-letters it with its reason
			continue
		}
		items = append(items, item{d, ev})
	}
	slices.SortStableFunc(items, func(a, b item) int { return strings.Compare(a.ev.OrderID, b.ev.OrderID) })
	if len(items) == 0 {
		return rest
	}
	events := make([]Event, len(items))
	for i, it := range items {
		events[i] = it.ev
	}
	tags := make([]uint64, len(items))
	for i, it := range items {
		tags[i] = it.d.DeliveryTag
	}
	var duplicate []bool
	stopped, err := c.persist(ctx, stopping, acks, tags, c.cfg.Logger.With("queue", c.cfg.Queue.Name), func() (err error) {
		duplicate, err = c.applyInTx(ctx, events)
		return err
	})
	if stopped {
		return nil
	}
	if err != nil {
		c.cfg.Logger.DebugContext(ctx, "batch failed, applying its deliveries one by one", "size", len(items), "err", err)
		for _, it := range items {
			rest = append(rest, it.d)
		}
		return rest
	}
	for _, it := range items {
		if c.cfg.afterCommit != nil {
			c.cfg.afterCommit(it.ev) // committed, not yet acked
		}
	}
	if err := acks.ack(tags...); err != nil {
		return rest // the connection is gone: redelivered, and skipped by the inbox
	}
	for i, it := range items {
		if it.d.Redelivered {
			c.cfg.Metrics.incRedelivered(c.cfg.Queue.Name)
		}
		outcome := "applied"
		if duplicate[i] {
			outcome = "duplicate"
		} else {
			c.applied(it.ev)
		}
		c.cfg.Metrics.incConsumed(c.cfg.Queue.Name, it.ev.Type, outcome)
	}
	return rest
}

// parse decodes a delivery's body into an event and checks it with the configured Check.
func (c *Consumer) parse(body []byte) (Event, error) {
	ev, err := parseEvent(body)
	if err != nil || c.cfg.Check == nil {
		return ev, err
	}
	if err := c.cfg.Check(ev); err != nil {
		return Event{}, fmt.Errorf("invalid event: %w", err)
	}
	return ev, nil
}

// settleAlone takes one delivery to its end, in transactions of its own: applied and acked,
// retried, dead-lettered, or left unacked for the broker to redeliver when the consumer is
// stopping or has lost its connection.
func (c *Consumer) settleAlone(ctx context.Context, dlq *amqp.Channel, acks *acker, d amqp.Delivery, stopping <-chan struct{}) {
	q := c.cfg.Queue.Name
	log := c.cfg.Logger.With("queue", q, "message_id", d.MessageId, "routing_key", d.RoutingKey)
	if d.Redelivered {
		c.cfg.Metrics.incRedelivered(q)
	}
	ev, err := c.parse(d.Body)
	if err != nil {
		log.WarnContext(ctx, "dead-lettering malformed message", "err", err)
		c.deadLetter(ctx, dlq, acks, d, ReasonMalformed, err, 0, log)
		return
	}
	log = log.With("event_id", ev.ID, "type", ev.Type, "order_id", ev.OrderID)

	wait := c.cfg.RetryBackoff
	tags := []uint64{d.DeliveryTag}
	for attempt := 1; ; attempt++ {
		var duplicate bool
		stopped, err := c.persist(ctx, stopping, acks, tags, log, func() error {
			dup, err := c.applyInTx(ctx, []Event{ev})
			duplicate = err == nil && dup[0]
			return err
		})
		if stopped {
			return // unacked: the broker redelivers it to whoever consumes next
		}
		if err == nil {
			if c.cfg.afterCommit != nil {
				c.cfg.afterCommit(ev)
			}
			if err := acks.ack(d.DeliveryTag); err != nil {
				// The connection is gone: the broker redelivers and the inbox skips it.
				log.WarnContext(ctx, "ack failed after commit", "err", err)
				return
			}
			outcome := "applied"
			if duplicate {
				outcome = "duplicate"
			} else {
				c.applied(ev)
			}
			c.cfg.Metrics.incConsumed(q, ev.Type, outcome)
			return
		}
		if attempt >= c.cfg.MaxAttempts {
			log.ErrorContext(ctx, "dead-lettering event: handler keeps failing", "attempts", attempt, "err", err)
			c.deadLetter(ctx, dlq, acks, d, ReasonFailed, err, attempt, log)
			return
		}
		c.cfg.Metrics.incRetried(q)
		if attempt == 1 {
			_ = acks.retrying(d.DeliveryTag) // what it holds back is acked now, not after the backoff
		}
		log.WarnContext(ctx, "handler failed, retrying", "attempt", attempt, "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
			wait *= 2
		case <-stopping:
			return // unacked: the broker redelivers it to whoever consumes next
		}
	}
}

// applyInTx applies events, in their order, in one transaction, the one step both settleBatch and
// settleAlone take: one statement records them all in
// the inbox, the handler runs for each one that was not there before, and the work the handlers
// deferred (the events they write, above all) is done once before the commit. duplicate[i]
// reports that events[i] had been applied before, or appears earlier in events.
func (c *Consumer) applyInTx(ctx context.Context, events []Event) (duplicate []bool, err error) {
	ctx, tx, duplicate, apply, err := c.begin(ctx, events)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	fresh := make([]Event, 0, len(events))
	for i, ev := range events {
		if !duplicate[i] {
			fresh = append(fresh, ev)
		}
	}
	if len(fresh) > 0 {
		if err := apply(ctx, tx, fresh); err != nil {
			return duplicate, err
		}
	}
	return duplicate, tx.Commit(ctx)
}

// begin begins the consumer transaction and records events in the inbox, in one round trip (the
// BEGIN pipelined with the insert, and with what the preparer queues, whose handler it returns),
// and reports which were there already. ctx carries tx's scope.
func (c *Consumer) begin(ctx context.Context, events []Event) (_ context.Context, tx *Tx, duplicate []bool, apply BatchHandler, err error) {
	duplicate = make([]bool, len(events))
	// [16]byte, not uuid.UUID: pgx encodes a uuid.UUID through its driver.Valuer (a string, parsed
	// back), which was most of this statement's cost in the process.
	ids := make([][16]byte, 0, len(events))
	types := make([]string, 0, len(events))
	orders := make([]string, 0, len(events))
	first := make(map[uuid.UUID]int, len(events))
	for i, ev := range events {
		if _, seen := first[ev.ID]; seen {
			duplicate[i] = true // the same event twice in one batch: apply it once
			continue
		}
		first[ev.ID] = i
		ids, types, orders = append(ids, [16]byte(ev.ID)), append(types, ev.Type), append(orders, ev.OrderID)
	}
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	var fresh [][16]byte
	b.Queue(`
INSERT INTO outbox_inbox (event_id, event_type, order_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING RETURNING event_id`, ids, types, orders).Query(func(rows pgx.Rows) (err error) {
		fresh, err = pgx.CollectRows(rows, pgx.RowTo[[16]byte])
		return err
	})
	apply = c.prepare(b, events)
	ctx, tx, br := Begin(ctx, c.pool, b)
	if err := br.Close(); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, nil, nil, nil, fmt.Errorf("begin, record in inbox: %w", err)
	}
	isFresh := make(map[uuid.UUID]bool, len(fresh))
	for _, id := range fresh {
		isFresh[id] = true
	}
	for id, i := range first {
		duplicate[i] = !isFresh[id]
	}
	return ctx, tx, duplicate, apply, nil
}

// deadLetter moves d to the queue's DLQ with the reason in its headers, then acks it. If that
// publish is not confirmed, d is rejected without requeue, which the queue's own dead-letter
// arguments route to the same DLQ (with the broker's x-death reason instead of ours).
func (c *Consumer) deadLetter(ctx context.Context, dlq *amqp.Channel, acks *acker, d amqp.Delivery, reason string, cause error, attempts int, log *slog.Logger) {
	// The publish below may wait up to five seconds for its confirm (longer behind a resource
	// alarm): the acks of the deliveries after this one must not wait with it.
	_ = acks.retrying(d.DeliveryTag)
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderDLQReason] = reason
	headers[HeaderDLQError] = truncate(cause.Error(), 1024)
	headers[HeaderRoutingKey] = d.RoutingKey
	headers[headerDLQAttempts] = int32(attempts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	confirm, err := dlq.PublishWithDeferredConfirmWithContext(pctx, "", c.cfg.Queue.DLQ(), false, false, amqp.Publishing{
		ContentType:  d.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    d.MessageId,
		Timestamp:    d.Timestamp,
		Headers:      headers,
		Body:         d.Body,
	})
	if err == nil {
		var ok bool
		ok, err = confirm.WaitContext(pctx)
		if err == nil && !ok {
			err = errors.New("broker nacked the dead letter")
		}
	}
	if err != nil {
		log.WarnContext(ctx, "publish to DLQ failed; rejecting so the broker dead-letters it", "err", err)
		if err := acks.reject(d.DeliveryTag); err != nil {
			return // connection gone: redelivered later, and dead-lettered then
		}
	} else if err := acks.ack(d.DeliveryTag); err != nil {
		return // the DLQ holds a copy and the original comes back; the copy is harmless
	}
	c.cfg.Metrics.incDeadLettered(c.cfg.Queue.Name, reason)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
