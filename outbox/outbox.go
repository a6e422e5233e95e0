package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// DefaultQueue is the River queue the relay jobs live in.
const DefaultQueue = "outbox"

// Config configures a service's Outbox.
type Config struct {
	// Service names the producing service (metrics, River client id).
	Service string
	// Publisher relays the events. Nil makes a write-only outbox: it records events and wakes
	// whichever relay runs elsewhere on the same database.
	Publisher *Publisher
	// Queue is the River queue for relay jobs (default DefaultQueue).
	Queue string
	// MaxWorkers bounds relay jobs in flight in this process, and so unconfirmed publishes
	// (default 256).
	MaxWorkers int
	// FetchCooldown and FetchPollInterval tune how soon River fetches a committed job: the
	// first bounds fetches after a LISTEN/NOTIFY wake-up (default 2ms), the second is the
	// fallback poll (default 100ms).
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// RescueAfter is how long a relay job may sit in "running" before another relay assumes
	// its worker died and runs it again (default 30s, longer than PublishTimeout).
	RescueAfter time.Duration
	// PublishTimeout bounds one publish attempt, reconnection waits included (default 20s).
	PublishTimeout time.Duration
	// PollOnly turns off LISTEN/NOTIFY: the relay only polls, every FetchPollInterval (for a
	// connection pooler that cannot LISTEN). Otherwise Wake, called after a commit that wrote
	// events, sends one NOTIFY on its own, and the relay fetches at once. Writes never NOTIFY
	// inside their transaction: a NOTIFY takes a cluster-wide lock at commit, so every notifying
	// writer, in every database of the server, would queue behind the others' WAL flush
	// (BENCHMARKS.md).
	PollOnly bool
	// InboxRetention is how long the inbox remembers applied events (default 7 days): the window
	// in which a redelivered or replayed event is recognised. The relay's leader prunes older
	// entries every ten minutes.
	InboxRetention time.Duration
	// Retention keeps relayed events this long (default 1h) for inspection.
	Retention time.Duration
	// DirectPublish publishes the events of a transaction written through a Scope (every
	// consumer transaction, and order placements) right after its commit, from the committing
	// process, without waiting for the relay to fetch them. The relay stays the guarantee: such
	// events are written as relay jobs due DirectGrace later (default 5s), and the dispatcher
	// marks them done once the broker confirmed them, so only what it could not publish (a crash,
	// a broker outage) is relayed, after the grace. Needs a Publisher.
	DirectPublish bool
	DirectGrace   time.Duration
	// Optional reports routing keys for which no bound queue is fine (a live fan-out nobody
	// listens to right now). Every other unroutable event is retried until a queue exists.
	Optional func(routingKey string) bool
	Metrics  *Metrics
	Logger   *slog.Logger

	// afterConfirm runs after the broker confirmed and before the job is marked done: a test
	// hook for crashing there.
	afterConfirm func(Event)
}

// Outbox writes events inside the caller's transaction and, when it has a Publisher, relays them
// to RabbitMQ. The events one transaction writes are one River job (up to maxEventsPerJob): the
// job row is their outbox row.
type Outbox struct {
	cfg    Config
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx] // the relay

	notify      riverdriver.Executor // sends Wake's NOTIFY
	wakePayload string
	wakePending atomic.Bool
	waking      atomic.Bool

	dmu         sync.Mutex
	dqueue      []directJob // committed, not yet taken by a dispatcher
	dispatchers int
	doneQ       []int64 // published directly, not yet marked completed
	completing  bool
	dwg         sync.WaitGroup // dispatchers and the completer
}

// relayArgs is the River job that carries the events one transaction wrote: the job row is their
// outbox row. Each event is kept as its JSON and published as it is. OrderIDs (distinct) is what
// the order timeline's index finds jobs by. A job written before events were batched has no
// Events: its arguments are the one event itself.
type relayArgs struct {
	Events   []json.RawMessage `json:"events"`
	OrderIDs []string          `json:"orderIds"`
}

// eventHead is the part of an event's JSON the relay reads.
type eventHead struct {
	ID          uuid.UUID `json:"eventId"`
	Type        string    `json:"type"`
	OrderID     string    `json:"orderId"`
	TraceParent string    `json:"traceparent"`
}

// maxEventsPerJob bounds one relay job: a job is retried whole, and republishes all its events.
const maxEventsPerJob = 256

func (relayArgs) Kind() string { return "outbox_relay" }

// New builds the service's outbox on pool. Start runs the relay.
func New(pool *pgxpool.Pool, cfg Config) (*Outbox, error) {
	if cfg.Service == "" {
		return nil, errors.New("outbox: Service is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 256
	}
	if cfg.FetchCooldown <= 0 {
		cfg.FetchCooldown = 2 * time.Millisecond
	}
	if cfg.FetchPollInterval <= 0 {
		cfg.FetchPollInterval = 100 * time.Millisecond
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 20 * time.Second
	}
	if cfg.RescueAfter <= 0 {
		cfg.RescueAfter = 30 * time.Second
	}
	if cfg.RescueAfter <= cfg.PublishTimeout {
		return nil, fmt.Errorf("outbox: RescueAfter (%s) must exceed PublishTimeout (%s), or a slow publish is run twice", cfg.RescueAfter, cfg.PublishTimeout)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = time.Hour
	}
	if cfg.InboxRetention <= 0 {
		cfg.InboxRetention = 7 * 24 * time.Hour
	}
	if cfg.Optional == nil {
		cfg.Optional = func(string) bool { return false }
	}
	if cfg.DirectGrace <= 0 {
		cfg.DirectGrace = 5 * time.Second
	}
	if cfg.Publisher == nil {
		cfg.DirectPublish = false
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{cfg: cfg, pool: pool, wakePayload: fmt.Sprintf(`{"queue": %q}`, cfg.Queue)}

	rc := &river.Config{
		ID:     fmt.Sprintf("%s-%d", cfg.Service, time.Now().UnixNano()),
		Logger: cfg.Logger.With("component", "river", "service", cfg.Service),
		// The notify limiter for inserts uses the client-wide cooldown.
		FetchCooldown:               cfg.FetchCooldown,
		FetchPollInterval:           cfg.FetchPollInterval,
		CompletedJobRetentionPeriod: cfg.Retention,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		PollOnly:                    cfg.PollOnly,
		JobTimeout:                  cfg.PublishTimeout,
	}
	if cfg.Publisher != nil {
		workers := river.NewWorkers()
		river.AddWorker(workers, &relayWorker{o: o})
		river.AddWorker(workers, &pruneWorker{o: o})
		rc.Workers = workers
		rc.PeriodicJobs = []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(10*time.Minute),
			func() (river.JobArgs, *river.InsertOpts) { return pruneArgs{}, &river.InsertOpts{Queue: cfg.Queue} },
			&river.PeriodicJobOpts{ID: "outbox_prune_inbox", RunOnStart: true})}
		rc.Queues = map[string]river.QueueConfig{cfg.Queue: {
			MaxWorkers:        cfg.MaxWorkers,
			FetchCooldown:     cfg.FetchCooldown,
			FetchPollInterval: cfg.FetchPollInterval,
		}}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), rc)
	if err != nil {
		return nil, fmt.Errorf("outbox: river client: %w", err)
	}
	o.client = client
	o.notify = riverpgxv5.New(pool).GetExecutor()
	return o, nil
}

// Wake tells the relays of this database, in this process or another, that a transaction which
// wrote events has committed: one NOTIFY outside any transaction, after the commit, so the
// relay fetches the events now instead of at its next poll. Calls while a NOTIFY is being sent
// are folded into one more after it; none is lost, and a failed NOTIFY leaves the events to the
// poll. It never blocks.
func (o *Outbox) Wake() {
	if o.cfg.PollOnly {
		return
	}
	o.wakePending.Store(true)
	if o.waking.CompareAndSwap(false, true) {
		go o.wakeLoop()
	}
}

func (o *Outbox) wakeLoop() {
	for {
		for o.wakePending.Swap(false) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := o.notify.NotifyMany(ctx, &riverdriver.NotifyManyParams{
				Topic:   riverInsertTopic,
				Payload: []string{o.wakePayload},
			})
			cancel()
			if err != nil {
				o.cfg.Logger.Debug("relay wake-up failed; the poll will find the events", "err", err)
			}
		}
		o.waking.Store(false)
		// A Wake between the last Swap and the Store saw waking set and started nobody.
		if !o.wakePending.Load() || !o.waking.CompareAndSwap(false, true) {
			return
		}
	}
}

// riverInsertTopic is the channel River's producers listen on for new jobs (River sends the same
// notification itself from inside an inserting transaction, which is what Wake avoids).
const riverInsertTopic = "river_insert"

// Write records events in tx: they are published if and only if tx commits. In a Tx (InTx,
// Begin, every consumer transaction; ctx must be the Tx's) they are inserted with its COMMIT and
// published after it, directly or by waking the relay. In any other transaction they are
// inserted at once: call Wake once tx has committed, or the relay finds them only at its next
// poll.
func (o *Outbox) Write(ctx context.Context, tx pgx.Tx, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return fmt.Errorf("outbox: %s: %w", events[i].Type, err)
		}
		stamp(ctx, &events[i])
	}
	if s := scopeOf(ctx, tx); s != nil {
		s.deferWrite(o, events) // inserted with the COMMIT, with the rest of the transaction's events
		return nil
	}
	b := &pgx.Batch{}
	if err := o.queueInsert(b, events, false, nil); err != nil {
		return err
	}
	return tx.SendBatch(ctx, b).Close()
}

// insertJobs writes relay jobs as River's own insert (JobInsertFastMany) would, without the
// unique keys relay jobs never have, in one statement however many, and returns their ids. The
// time they were written is the statement's (River's client stamps its own clock), not the
// transaction's start: sent with the COMMIT, it orders them as their transactions committed.
// Writing them here, rather than through River's client, lets the insert go out in the same
// round trip as the COMMIT, and saves River re-encoding the events.
const insertJobs = `
INSERT INTO river_job (args, kind, max_attempts, queue, created_at, scheduled_at, state)
SELECT a.args, $2, $3, $4, clock_timestamp(), coalesce($5, clock_timestamp()), $6::river_job_state
FROM unnest($1::jsonb[]) WITH ORDINALITY AS a(args, n) ORDER BY a.n
RETURNING id`

// queueInsert queues in b the insert of validated, stamped events as relay jobs (one job per
// maxEventsPerJob events). With direct, the jobs are due only after the grace, and once the
// batch's results are read they are handed to jobs, for dispatch after the commit.
func (o *Outbox) queueInsert(b *pgx.Batch, events []Event, direct bool, jobs func([]directJob)) error {
	var due *time.Time // nil: due now, by the database's clock
	state := rivertype.JobStateAvailable
	if direct {
		at := time.Now().Add(o.cfg.DirectGrace)
		due, state = &at, rivertype.JobStateScheduled
	}
	var args [][]byte
	var pending []directJob
	for chunk := range slices.Chunk(events, maxEventsPerJob) {
		j := directJob{events: make([]json.RawMessage, len(chunk))}
		var orderIDs []string
		for i, e := range chunk {
			raw, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("outbox: encode %s: %w", e.Type, err)
			}
			j.events[i] = raw
			if direct {
				j.heads = append(j.heads, eventHead{ID: e.ID, Type: e.Type, OrderID: e.OrderID, TraceParent: e.TraceParent})
			}
			if !slices.Contains(orderIDs, e.OrderID) {
				orderIDs = append(orderIDs, e.OrderID)
			}
		}
		args = append(args, encodeRelayArgs(j.events, orderIDs))
		if direct {
			j.due = *due
		}
		pending = append(pending, j)
	}
	b.Queue(insertJobs, args, relayArgs{}.Kind(), int16(math.MaxInt16), o.cfg.Queue, due, string(state)).Query(
		func(rows pgx.Rows) error {
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
				return fmt.Errorf("outbox: write %d events: %w", len(events), err) // nothing commits
			}
			if err == nil && len(ids) != len(pending) {
				err = fmt.Errorf("inserted %d relay jobs, expected %d", len(ids), len(pending))
			}
			if err != nil {
				// The jobs were written; which is which is not known here, so the relay publishes
				// them, after the grace. Failing here would report a COMMIT that ran as failed.
				o.cfg.Logger.Warn("outbox: relay jobs written but not read back; the relay will publish them", "err", err)
				return nil
			}
			if direct {
				slices.Sort(ids) // the sequence numbered them in the order they were inserted
				for i := range pending {
					pending[i].id = ids[i]
				}
				jobs(pending)
			}
			return nil
		})
	return nil
}

// encodeRelayArgs is relayArgs{Events: events, OrderIDs: orderIDs} as JSON, without encoding
// the events again (each is JSON already).
func encodeRelayArgs(events []json.RawMessage, orderIDs []string) []byte {
	ids, _ := json.Marshal(orderIDs) // strings always encode
	n := len(`{"events":[],"orderIds":}`) + len(ids) + len(events)
	for _, e := range events {
		n += len(e)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, `{"events":[`...)
	for i, e := range events {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	buf = append(buf, `],"orderIds":`...)
	buf = append(buf, ids...)
	return append(buf, '}')
}

// Start runs the relay (when the outbox has a Publisher) until Stop.
func (o *Outbox) Start(ctx context.Context) error {
	if o.cfg.Publisher == nil {
		return nil
	}
	// River treats cancelling Start's context as a hard stop that cancels running jobs; the
	// relay's life is ended by Stop instead, which lets in-flight publishes finish.
	return o.client.Start(context.WithoutCancel(ctx))
}

// Stop finishes the publishes in flight, direct ones included, and stops fetching (River's soft
// stop); ctx bounds the wait. Call it once the process no longer commits events.
func (o *Outbox) Stop(ctx context.Context) error {
	if o.cfg.Publisher == nil {
		return nil
	}
	drained := make(chan struct{})
	go func() { o.dwg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done(): // what is left is the relay's, after the grace
	}
	return o.client.Stop(ctx)
}

// Collector reports this outbox's backlog (pending events, age of the oldest) at scrape time.
func (o *Outbox) Collector() prometheus.Collector {
	return newBacklogCollector(o.pool, o.cfg.Service, o.cfg.Queue)
}

// Backlog returns how many events await their confirm and the age of the oldest.
func (o *Outbox) Backlog(ctx context.Context) (int64, time.Duration, error) {
	return pendingBacklog(ctx, o.pool, o.cfg.Queue)
}

type relayWorker struct {
	river.WorkerDefaults[relayArgs]
	o *Outbox
}

// Work publishes the job's events in their order, their confirms pipelined, and succeeds when
// the broker confirmed every one. A failure retries the whole job: the events already confirmed
// are published again, and the consumers' inboxes skip them.
func (w *relayWorker) Work(ctx context.Context, job *river.Job[relayArgs]) error {
	o := w.o
	raws := job.Args.Events
	if len(raws) == 0 {
		raws = []json.RawMessage{job.EncodedArgs} // written before events were batched
	}
	return errors.Join(o.publish(ctx, raws, job.Attempt)...)
}

// publish publishes events in their order, their confirms pipelined, and returns the failures
// (an unroutable event whose key is optional is no failure).
func (o *Outbox) publish(ctx context.Context, raws []json.RawMessage, attempt int) []error {
	heads := make([]eventHead, len(raws))
	for i, raw := range raws {
		// Only what routing and tracing need, without copying the payload.
		if err := json.Unmarshal(raw, &heads[i]); err != nil {
			return []error{fmt.Errorf("outbox: undecodable event in relay job: %w", err)}
		}
	}
	return o.publishHeads(ctx, raws, heads, attempt)
}

// publishHeads is publish with each event's head already known (the dispatcher wrote them).
func (o *Outbox) publishHeads(ctx context.Context, raws []json.RawMessage, heads []eventHead, attempt int) []error {
	msgs := make([]Message, len(raws))
	spans := make([]trace.Span, len(raws))
	for i, raw := range raws {
		h := heads[i]
		ev := Event{ID: h.ID, Type: h.Type, OrderID: h.OrderID, TraceParent: h.TraceParent}
		var sctx context.Context
		sctx, spans[i] = StartSpan(ctx, "publish", ev, trace.SpanKindProducer)
		msgs[i] = Message{Key: h.Type, MsgID: h.ID.String(), Body: raw, Headers: traceHeaders(sctx)}
	}
	var failed []error
	for i, err := range o.cfg.Publisher.PublishAll(ctx, msgs) {
		h := heads[i]
		if errors.Is(err, ErrUnroutable) {
			o.cfg.Metrics.incUnroutable(o.cfg.Service, h.Type)
			if o.cfg.Optional(h.Type) {
				err = nil
			} else {
				o.cfg.Logger.WarnContext(ctx, "event unroutable, will retry: no queue is bound for it yet",
					"event_id", h.ID, "type", h.Type, "order_id", h.OrderID, "attempt", attempt)
			}
		} else if err == nil {
			o.cfg.Metrics.incPublished(o.cfg.Service, h.Type)
			if o.cfg.afterConfirm != nil {
				o.cfg.afterConfirm(Event{ID: h.ID, Type: h.Type, OrderID: h.OrderID, TraceParent: h.TraceParent})
			}
		}
		if err != nil {
			spans[i].SetStatus(codes.Error, err.Error())
			failed = append(failed, &publishError{id: h.ID, typ: h.Type, err: err})
		}
		spans[i].End()
	}
	return failed
}

// publishError is one event's failed publish.
type publishError struct {
	id  uuid.UUID
	typ string
	err error
}

func (e *publishError) Error() string { return e.typ + " " + e.id.String() + ": " + e.err.Error() }
func (e *publishError) Unwrap() error { return e.err }

// NextRetry retries a failed relay soon and then at most every ten seconds: the broker is
// expected back, and the event must not wait River's default hours-long backoff.
func (w *relayWorker) NextRetry(job *river.Job[relayArgs]) time.Time {
	d := 100 * time.Millisecond << min(job.Attempt, 7)
	return time.Now().Add(min(d, 10*time.Second))
}

var _ rivertype.JobArgs = relayArgs{}

// pruneArgs is the periodic job that forgets inbox entries older than InboxRetention.
type pruneArgs struct{}

func (pruneArgs) Kind() string { return "outbox_prune_inbox" }

type pruneWorker struct {
	river.WorkerDefaults[pruneArgs]
	o *Outbox
}

func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[pruneArgs]) error {
	// In slices, so one run never holds a long transaction over a large inbox.
	for {
		tag, err := w.o.pool.Exec(ctx, `
DELETE FROM outbox_inbox WHERE event_id IN (
	SELECT event_id FROM outbox_inbox WHERE consumed_at < now() - make_interval(secs => $1) LIMIT 10000)`, customPlan,
			w.o.cfg.InboxRetention.Seconds())
		if err != nil || tag.RowsAffected() < 10000 {
			return err
		}
	}
}
