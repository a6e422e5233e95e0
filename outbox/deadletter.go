package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
)

// headerReplayRoutingKey is set on a replayed message: the routing key it was first published
// with. A replay goes to the service's own queue through the default exchange (routing key = the
// queue's name), so if the message is dead-lettered again its x-pizza-routing-key names the queue,
// and this header keeps the original.
const headerReplayRoutingKey = "x-pizza-replay-routing-key"

// MaxDeadLetterIDs bounds the ids one Replay or Discard may name.
const MaxDeadLetterIDs = 1000

// replayChunk is how many dead letters one replay transaction publishes and deletes.
const replayChunk = 500

// ErrBrokerUnavailable wraps a replay that could not be published and confirmed: nothing was
// deleted (what was published meanwhile is applied once; replaying it again is a harmless
// duplicate).
var ErrBrokerUnavailable = errors.New("rabbitmq unavailable")

// DeadLetter is one message a service's consumer dead-lettered, parked in the service's database.
type DeadLetter struct {
	ID      int64  `json:"id,string"` // unique within its service
	Service string `json:"service"`
	// EventID, Type and OrderID are the event's; empty when the message is not an event.
	EventID string `json:"eventId,omitempty"`
	Type    string `json:"type,omitempty"`
	OrderID string `json:"orderId,omitempty"`
	// RoutingKey is the routing key the message was first published with.
	RoutingKey string `json:"routingKey"`
	// Reason is ReasonMalformed or ReasonFailed, or the broker's own (rejected, delivery_limit,
	// expired) for a message the broker dead-lettered.
	Reason         string    `json:"reason"`
	Error          string    `json:"error,omitempty"`
	Attempts       int       `json:"attempts"`
	DeadLetteredAt time.Time `json:"deadLetteredAt"`
	// Body is the message as received (the event's JSON), invalid UTF-8 replaced.
	Body string `json:"body"`
}

// UnknownDeadLettersError names the ids a Replay or Discard asked for that are no dead letter of
// the service (never were, or were replayed or discarded already). Nothing was done.
type UnknownDeadLettersError struct {
	Service string
	IDs     []string
}

func (e *UnknownDeadLettersError) Error() string {
	return fmt.Sprintf("no dead letter %s in %s", strings.Join(e.IDs, ", "), e.Service)
}

// DeadLetterConfig configures a service's DeadLetters.
type DeadLetterConfig struct {
	URL      string
	Exchange string // default "pizza.events"
	// Queue is the service's queue (the consumer's); its DLQ is what is parked.
	Queue   QueueSpec
	Service string
	Metrics *Metrics
	Logger  *slog.Logger
}

// DeadLetters parks one service's dead letters in its database (table outbox_dead_letters) and
// lets an operator list, replay and discard them. AMQP cannot list a queue without consuming it,
// so Run consumes the DLQ for as long as the service runs: each message is inserted (a
// redelivery updates its row: the key is the eventId, or a hash of a body that is no event) and
// only then acked. Replay publishes a dead letter, with publisher confirms, to the service's own
// queue through the default exchange, so that no other service sees it again, and deletes its row
// once confirmed; a crash between the two leaves the row, and replaying it again is a duplicate
// the consumer's inbox skips.
type DeadLetters struct {
	pool      *pgxpool.Pool
	cfg       DeadLetterConfig
	connected atomic.Bool
}

// NewDeadLetters returns the dead letters of the service whose database pool is.
func NewDeadLetters(pool *pgxpool.Pool, cfg DeadLetterConfig) *DeadLetters {
	if cfg.Exchange == "" {
		cfg.Exchange = defaultExchange
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &DeadLetters{pool: pool, cfg: cfg}
}

// Connected reports whether Run is consuming the DLQ now.
func (d *DeadLetters) Connected() bool { return d.connected.Load() }

// Run parks the DLQ's messages as they arrive until ctx ends, reconnecting with backoff.
func (d *DeadLetters) Run(ctx context.Context) error {
	b := backoff{min: 50 * time.Millisecond, max: 5 * time.Second}
	for {
		conn, _, err := dialLoop(ctx, d.cfg.URL, "pizza-dlq-park-"+d.cfg.Queue.Name, d.cfg.Logger)
		if err != nil {
			return nil // ctx ended while connecting
		}
		started := time.Now()
		err = d.session(ctx, conn)
		_ = conn.Close()
		d.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 10*time.Second {
			b.reset()
		}
		wait := b.next()
		d.cfg.Logger.WarnContext(ctx, "dead-letter parker lost its connection, reconnecting", "queue", d.cfg.Queue.DLQ(), "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

func (d *DeadLetters) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := declareQueue(ch, d.cfg.Exchange, d.cfg.Queue); err != nil {
		return err
	}
	if err := ch.Qos(16, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(d.cfg.Queue.DLQ(), "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", d.cfg.Queue.DLQ(), err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	d.connected.Store(true)
	wait := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return nil // what is unacked goes back to the DLQ with the connection
		case e := <-closed:
			return fmt.Errorf("connection closed: %v", e)
		case e := <-chClosed:
			return fmt.Errorf("channel closed: %v", e)
		case m, ok := <-deliveries:
			if !ok {
				return errors.New("the broker ended the DLQ consumer")
			}
			if err := d.park(ctx, m); err != nil {
				// The database is unreachable or failing: leave the message in the DLQ.
				retry := wait.next()
				d.cfg.Logger.WarnContext(ctx, "cannot park a dead letter; it stays in the DLQ", "queue", d.cfg.Queue.DLQ(), "err", err, "retry_in", retry)
				sleep(ctx, retry)
				if err := m.Nack(false, true); err != nil {
					return err
				}
				continue
			}
			wait.reset()
			if err := m.Ack(false); err != nil {
				return err // the row is there; the redelivery updates it
			}
		}
	}
}

// Drain parks what the DLQ holds now, without waiting for more, and returns how many it parked:
// for tools that work on the service's database while the service itself may be down.
func (d *DeadLetters) Drain(ctx context.Context) (int, error) {
	conn, ch, err := d.channel()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	n := 0
	for ctx.Err() == nil {
		m, ok, err := ch.Get(d.cfg.Queue.DLQ(), false)
		if err != nil {
			return n, fmt.Errorf("%w: get from %s: %v", ErrBrokerUnavailable, d.cfg.Queue.DLQ(), err)
		}
		if !ok {
			return n, nil
		}
		if err := d.park(ctx, m); err != nil {
			_ = m.Nack(false, true)
			return n, fmt.Errorf("park a dead letter: %w", err)
		}
		if err := m.Ack(false); err != nil {
			return n, fmt.Errorf("%w: ack: %v", ErrBrokerUnavailable, err)
		}
		n++
	}
	return n, ctx.Err()
}

// channel dials the broker and declares the service's queue and DLQ on a new channel.
func (d *DeadLetters) channel() (*amqp.Connection, *amqp.Channel, error) {
	conn, err := amqp.DialConfig(d.cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "pizza-dlq-" + d.cfg.Queue.Name},
		Dial:       dial,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBrokerUnavailable, err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = declareQueue(ch, d.cfg.Exchange, d.cfg.Queue)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrBrokerUnavailable, err)
	}
	return conn, ch, nil
}

// parked is a dead-lettered message read into the table's columns.
type parked struct {
	dedupeKey, messageID, eventType, orderID, routingKey, reason, errText, contentType string
	eventID                                                                            *uuid.UUID
	attempts                                                                           int
	headers                                                                            []byte
	body                                                                               []byte
}

// readDeadLetter reads what the consumer's headers (or the broker's x-death, for a message it
// dead-lettered itself) say of a message in the DLQ of queue.
func readDeadLetter(m amqp.Delivery, queue string) parked {
	h := m.Headers
	p := parked{
		messageID:   clean(m.MessageId),
		contentType: clean(m.ContentType),
		body:        m.Body,
		reason:      headerString(h, HeaderDLQReason),
		errText:     headerString(h, HeaderDLQError),
		routingKey:  headerString(h, HeaderRoutingKey),
		attempts:    headerInt(h, headerDLQAttempts),
	}
	if p.reason == "" {
		if deaths, _ := h["x-death"].([]any); len(deaths) > 0 {
			if death, ok := deaths[0].(amqp.Table); ok { // the latest first
				p.reason = headerString(death, "reason")
				if keys, _ := death["routing-keys"].([]any); len(keys) > 0 {
					p.routingKey, _ = keys[0].(string)
				}
			}
		}
		p.attempts = headerInt(h, "x-delivery-count") // quorum queues count deliveries
		if p.reason == "" {
			p.reason = "unknown"
		}
	}
	if p.routingKey == queue || p.routingKey == "" { // dead-lettered again after a replay
		if rk := headerString(h, headerReplayRoutingKey); rk != "" {
			p.routingKey = rk
		}
	}
	p.routingKey = clean(p.routingKey)
	if ev, err := parseEvent(m.Body); err == nil {
		p.eventID, p.eventType, p.orderID = &ev.ID, clean(ev.Type), clean(ev.OrderID)
		p.dedupeKey = "event:" + ev.ID.String()
	} else {
		sum := sha256.Sum256(m.Body)
		p.dedupeKey = "sha256:" + hex.EncodeToString(sum[:])
	}
	var err error
	if p.headers, err = json.Marshal(h); err != nil || h == nil {
		p.headers = []byte("{}")
	}
	// jsonb refuses the NUL character, which a header may hold.
	p.headers = []byte(strings.ReplaceAll(string(p.headers), `\u0000`, `\ufffd`))
	return p
}

// park inserts (or, for a message parked before, updates) the message's row.
func (d *DeadLetters) park(ctx context.Context, m amqp.Delivery) error {
	p := readDeadLetter(m, d.cfg.Queue.Name)
	_, err := d.pool.Exec(ctx, `
INSERT INTO outbox_dead_letters (dedupe_key, message_id, event_id, event_type, order_id, routing_key,
	reason, error, attempts, content_type, headers, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (dedupe_key) DO UPDATE SET
	message_id = EXCLUDED.message_id, routing_key = EXCLUDED.routing_key, reason = EXCLUDED.reason,
	error = EXCLUDED.error, attempts = EXCLUDED.attempts, content_type = EXCLUDED.content_type,
	headers = EXCLUDED.headers, body = EXCLUDED.body, dead_lettered_at = now()`,
		p.dedupeKey, p.messageID, p.eventID, p.eventType, p.orderID, p.routingKey,
		p.reason, p.errText, p.attempts, p.contentType, p.headers, p.body)
	if err != nil {
		return err
	}
	d.cfg.Logger.WarnContext(ctx, "dead letter parked", "queue", d.cfg.Queue.DLQ(), "reason", p.reason,
		"dedupe_key", p.dedupeKey, "order_id", p.orderID, "err", p.errText)
	return nil
}

func headerString(h amqp.Table, key string) string {
	s, _ := h[key].(string)
	return clean(s)
}

func headerInt(h amqp.Table, key string) int {
	switch v := h[key].(type) {
	case int8:
		return int(v)
	case int16:
		return int(v)
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	case uint8:
		return int(v)
	case uint16:
		return int(v)
	case uint32:
		return int(v)
	case uint64:
		return int(min(v, 1<<31))
	}
	return 0
}

// clean makes s fit a text column: valid UTF-8, without NUL.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
