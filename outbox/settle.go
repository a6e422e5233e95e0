package outbox

// What happens to each delivery a Consumer takes: applied with the service's BatchPreparer in a
// transaction that records it in the inbox (applyInTx), then acked; retried; or dead-lettered.
// settleBatch takes several in one transaction, settleAlone one at a time.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

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
