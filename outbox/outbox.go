package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// defaultQueue is the River queue the relay jobs live in.
const defaultQueue = "outbox"

// Config configures a service's Outbox.
type Config struct {
	// Service names the producing service (metrics, River client id).
	Service string
	// Publisher relays the events. Nil makes a write-only outbox: it records events and wakes
	// whichever relay runs elsewhere on the same database.
	Publisher *Publisher
	// Queue is the River queue for relay jobs (default "outbox").
	Queue string
	// MaxWorkers bounds relay jobs in flight in this process, and so unconfirmed publishes
	// (default 256).
	MaxWorkers int
	// FetchCooldown and FetchPollInterval tune how soon River fetches a committed job: the
	// first bounds fetches after a LISTEN/NOTIFY wake-up (default 1ms), the second is the
	// fallback poll (default 50ms): the values `pizza serve` deploys.
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// RescueAfter is how long a relay job may sit in "running" before another relay assumes
	// its worker died and runs it again (default 30s, longer than PublishTimeout).
	RescueAfter time.Duration
	// PublishTimeout bounds one publish attempt, reconnection waits included (default 20s).
	PublishTimeout time.Duration
	// PollOnly turns off LISTEN/NOTIFY: the relay only polls, every FetchPollInterval (for a
	// connection pooler that cannot LISTEN). Otherwise wake, called after a commit that wrote
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
	// DirectPublish publishes the events of a transaction written in a Tx (every consumer
	// transaction, order placements, InTx) right after its commit, from the committing
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

	notify      riverdriver.Executor // sends wake's NOTIFY
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

// New builds the service's outbox on pool. Start runs the relay.
func New(pool *pgxpool.Pool, cfg Config) (*Outbox, error) {
	if cfg.Service == "" {
		return nil, errors.New("outbox: Service is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = defaultQueue
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 256
	}
	if cfg.FetchCooldown <= 0 {
		cfg.FetchCooldown = time.Millisecond
	}
	if cfg.FetchPollInterval <= 0 {
		cfg.FetchPollInterval = 50 * time.Millisecond
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
		// Write inserts its jobs itself (write.go), never through this client, so River's
		// insert-time NOTIFY never runs inside a transaction; wake notifies after the commit.
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
		rc.PeriodicJobs = []*river.PeriodicJob{pruneJob(cfg.Queue)}
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
