package outbox

// What an operator does with a service's parked dead letters (the admin API, pizza dlq): list
// them, replay them to the service's queue with publisher confirms, discard them, count them.
// Parking them is deadletter.go's.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
)

const deadLetterColumns = `id, COALESCE(event_id::text, ''), event_type, order_id, routing_key, reason, error, attempts,
	dead_lettered_at, body`

func (d *DeadLetters) scan(r pgx.CollectableRow) (DeadLetter, error) {
	dl := DeadLetter{Service: d.cfg.Service}
	var body []byte
	err := r.Scan(&dl.ID, &dl.EventID, &dl.Type, &dl.OrderID, &dl.RoutingKey, &dl.Reason, &dl.Error,
		&dl.Attempts, &dl.DeadLetteredAt, &body)
	dl.Body = strings.ToValidUTF8(string(body), "\uFFFD")
	return dl, err
}

// List returns up to limit dead letters, oldest first.
func (d *DeadLetters) List(ctx context.Context, limit int) ([]DeadLetter, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM outbox_dead_letters ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, d.scan)
	if out == nil {
		out = []DeadLetter{}
	}
	return out, err
}

// Replay publishes the dead letters named by ids to the service's queue and deletes them, and
// returns their ids; ids nil replays every dead letter parked when it began. Any id that is no
// dead letter of the service fails the whole call with an *UnknownDeadLettersError before
// anything is published.
func (d *DeadLetters) Replay(ctx context.Context, ids []string) ([]int64, error) {
	var want []int64
	if ids != nil {
		var err error
		if want, err = d.parseIDs(ids); err != nil {
			return nil, err
		}
	}
	conn, ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBrokerUnavailable, err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, max(replayChunk, len(want))+1))

	if ids != nil {
		return d.replayChunk(ctx, ch, returns, ids, want, 0)
	}
	var last int64
	if err := d.pool.QueryRow(ctx, `SELECT COALESCE(max(id), 0) FROM outbox_dead_letters`).Scan(&last); err != nil {
		return nil, err
	}
	replayed := []int64{}
	for {
		done, err := d.replayChunk(ctx, ch, returns, nil, nil, last)
		replayed = append(replayed, done...)
		if err != nil || len(done) == 0 {
			return replayed, err
		}
	}
}

// replayChunk replays the dead letters want (asked for as ids), or with want nil the next chunk
// of those up to last not locked by another replay, in one transaction.
func (d *DeadLetters) replayChunk(ctx context.Context, ch *amqp.Channel, returns chan amqp.Return, ids []string, want []int64, last int64) ([]int64, error) {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var rows pgx.Rows
	const columns = `id, message_id, routing_key, content_type, headers, body`
	if want != nil {
		rows, err = tx.Query(ctx, `SELECT `+columns+` FROM outbox_dead_letters WHERE id = ANY($1) ORDER BY id FOR UPDATE`, want)
	} else {
		rows, err = tx.Query(ctx, `SELECT `+columns+` FROM outbox_dead_letters WHERE id <= $1 ORDER BY id
FOR UPDATE SKIP LOCKED LIMIT $2`, last, replayChunk)
	}
	if err != nil {
		return nil, err
	}
	type replay struct {
		id                                 int64
		messageID, routingKey, contentType string
		headers                            map[string]any
		body                               []byte
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (replay, error) {
		var x replay
		err := r.Scan(&x.id, &x.messageID, &x.routingKey, &x.contentType, &x.headers, &x.body)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	done := make([]int64, len(found))
	for i, x := range found {
		done[i] = x.id
	}
	if want != nil {
		if err := d.unknown(ids, done); err != nil {
			return nil, err
		}
	}
	if len(found) == 0 {
		return done, nil
	}

	confirms := make([]*amqp.DeferredConfirmation, len(found))
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, x := range found {
		headers := replayHeaders(x.headers)
		if x.routingKey != "" {
			headers[headerReplayRoutingKey] = x.routingKey
		}
		confirms[i], err = ch.PublishWithDeferredConfirmWithContext(pctx, "", d.cfg.Queue.Name, true, false, amqp.Publishing{
			ContentType:  x.contentType,
			DeliveryMode: amqp.Persistent,
			MessageId:    x.messageID,
			Timestamp:    time.Now(),
			Headers:      headers,
			Body:         x.body,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: publish: %v", ErrBrokerUnavailable, err)
		}
	}
	for _, c := range confirms {
		ok, err := c.WaitContext(pctx)
		if err != nil {
			return nil, fmt.Errorf("%w: confirm: %v", ErrBrokerUnavailable, err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: the broker refused a replayed message", ErrBrokerUnavailable)
		}
	}
	select { // a return comes before its confirm
	case r := <-returns:
		return nil, fmt.Errorf("%w: queue %s did not take a replayed message: %s", ErrBrokerUnavailable, d.cfg.Queue.Name, r.ReplyText)
	default:
	}
	if _, err := tx.Exec(ctx, `DELETE FROM outbox_dead_letters WHERE id = ANY($1)`, done); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	d.cfg.Metrics.addReplayed(d.cfg.Service, len(done))
	d.cfg.Logger.InfoContext(ctx, "dead letters replayed", "queue", d.cfg.Queue.Name, "count", len(done))
	return done, nil
}

// replayHeaders are the headers a replayed message keeps: its own (the trace context), not the
// dead-lettering's, which a failure again sets afresh.
func replayHeaders(stored map[string]any) amqp.Table {
	out := amqp.Table{}
	for k, v := range stored {
		s, ok := v.(string) // stored as JSON: only strings come back as they were
		if !ok || strings.HasPrefix(k, "x-pizza-dlq-") || k == HeaderRoutingKey || strings.HasPrefix(k, "x-death") ||
			strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") || k == "x-delivery-count" {
			continue
		}
		out[k] = s
	}
	return out
}

// Discard deletes the dead letters named by ids and returns their ids. Any id that is no dead
// letter of the service fails the whole call with an *UnknownDeadLettersError, deleting nothing.
func (d *DeadLetters) Discard(ctx context.Context, ids []string) ([]int64, error) {
	want, err := d.parseIDs(ids)
	if err != nil {
		return nil, err
	}
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `DELETE FROM outbox_dead_letters WHERE id = ANY($1) RETURNING id`, want)
	if err != nil {
		return nil, err
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if err := d.unknown(ids, done); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	slices.Sort(done)
	d.cfg.Metrics.addDiscarded(d.cfg.Service, len(done))
	d.cfg.Logger.InfoContext(ctx, "dead letters discarded", "queue", d.cfg.Queue.Name, "count", len(done))
	return done, nil
}

// parseIDs reads ids (at least one, at most MaxDeadLetterIDs); one that cannot be an id is
// unknown, as one that is not in the table.
func (d *DeadLetters) parseIDs(ids []string) ([]int64, error) {
	if len(ids) == 0 {
		return nil, errors.New("no dead letter ids given")
	}
	if len(ids) > MaxDeadLetterIDs {
		return nil, fmt.Errorf("at most %d dead letter ids at once", MaxDeadLetterIDs)
	}
	out := make([]int64, 0, len(ids))
	var bad []string
	for _, s := range ids {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
			bad = append(bad, s)
			continue
		}
		out = append(out, id)
	}
	if bad != nil {
		return nil, &UnknownDeadLettersError{Service: d.cfg.Service, IDs: bad}
	}
	return out, nil
}

// unknown is the error naming the ids asked for and not found, or nil.
func (d *DeadLetters) unknown(ids []string, found []int64) error {
	var missing []string
	for _, s := range ids {
		id, _ := strconv.ParseInt(s, 10, 64)
		if !slices.Contains(found, id) && !slices.Contains(missing, s) {
			missing = append(missing, s)
		}
	}
	if missing != nil {
		return &UnknownDeadLettersError{Service: d.cfg.Service, IDs: missing}
	}
	return nil
}

// Count is how many dead letters the service holds, neither replayed nor discarded.
func (d *DeadLetters) Count(ctx context.Context) (int64, error) {
	var n int64
	err := d.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letters`).Scan(&n)
	return n, err
}

// Collector reports, at scrape time, how many dead letters the service holds.
func (d *DeadLetters) Collector() prometheus.Collector {
	return &parkedCollector{d: d, desc: prometheus.NewDesc("pizza_dead_letters_parked",
		"Dead letters parked in the service's database, awaiting replay or discard.", nil,
		prometheus.Labels{"service": d.cfg.Service})}
}

type parkedCollector struct {
	d    *DeadLetters
	desc *prometheus.Desc
}

func (c *parkedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *parkedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := c.d.Count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
