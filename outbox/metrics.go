package outbox

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the outbox's Prometheus series. Build one per process with NewMetrics and hand it
// to every Outbox and Consumer; a nil *Metrics records nothing.
type Metrics struct {
	published    *prometheus.CounterVec
	unroutable   *prometheus.CounterVec
	consumed     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	redelivered  *prometheus.CounterVec
	retried      *prometheus.CounterVec
	waited       *prometheus.CounterVec
	unavailable  *prometheus.GaugeVec
	lag          *prometheus.HistogramVec
	depth        *prometheus.GaugeVec
	replayed     *prometheus.CounterVec // dead letters
	discarded    *prometheus.CounterVec
	reg          prometheus.Registerer
}

// NewMetrics registers the outbox series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_outbox_published_total",
			Help: "Events the relay published and the broker confirmed, by producing service and event type.",
		}, []string{"service", "type"}),
		unroutable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_outbox_unroutable_total",
			Help: "Publishes the broker returned because no queue was bound to the routing key.",
		}, []string{"service", "type"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_consumer_consumed_total",
			Help: "Deliveries a consumer acknowledged, by queue, event type and outcome (applied or duplicate).",
		}, []string{"queue", "type", "outcome"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_consumer_dead_lettered_total",
			Help: "Deliveries sent to the queue's dead-letter queue, by reason (malformed or failed).",
		}, []string{"queue", "reason"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_consumer_redeliveries_total",
			Help: "Deliveries the broker flagged as redelivered (a consumer died or a connection dropped before the ack).",
		}, []string{"queue"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_consumer_handler_retries_total",
			Help: "Handler attempts that failed and were retried after a backoff.",
		}, []string{"queue"}),
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_consumer_transient_retries_total",
			Help: "Consumer transactions tried again, not counted as handler attempts, because the database was unavailable (reason unavailable) or the transaction lost a deadlock or serialization conflict (reason conflict).",
		}, []string{"queue", "reason"}),
		unavailable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pizza_consumer_database_unavailable",
			Help: "1 while the consumer's deliveries wait, unacked, for its database to come back.",
		}, []string{"queue"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pizza_consumer_lag_seconds",
			Help:    "From an event's occurredAt to its application by a consumer: how far behind the consumer runs.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"queue"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pizza_consumer_queue_depth",
			Help: "Messages ready in the consumer's queue, sampled every few seconds.",
		}, []string{"queue"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_dead_letters_replayed_total",
			Help: "Dead letters an operator replayed onto the service's queue.",
		}, []string{"service"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_dead_letters_discarded_total",
			Help: "Dead letters an operator discarded.",
		}, []string{"service"}),
	}
	reg.MustRegister(m.published, m.unroutable, m.consumed, m.deadLettered, m.redelivered, m.retried, m.waited, m.unavailable, m.lag, m.depth,
		m.replayed, m.discarded)
	return m
}

func (m *Metrics) incPublished(service, typ string) {
	if m != nil {
		m.published.WithLabelValues(service, typ).Inc()
	}
}

func (m *Metrics) incUnroutable(service, typ string) {
	if m != nil {
		m.unroutable.WithLabelValues(service, typ).Inc()
	}
}

func (m *Metrics) incConsumed(queue, typ, outcome string) {
	if m != nil {
		m.consumed.WithLabelValues(queue, typ, outcome).Inc()
	}
}

func (m *Metrics) incDeadLettered(queue, reason string) {
	if m != nil {
		m.deadLettered.WithLabelValues(queue, reason).Inc()
	}
}

func (m *Metrics) incRedelivered(queue string) {
	if m != nil {
		m.redelivered.WithLabelValues(queue).Inc()
	}
}

func (m *Metrics) observeLag(queue string, lag time.Duration) {
	if m != nil {
		m.lag.WithLabelValues(queue).Observe(lag.Seconds())
	}
}

func (m *Metrics) setDepth(queue string, n int) {
	if m != nil {
		m.depth.WithLabelValues(queue).Set(float64(n))
	}
}

func (m *Metrics) addReplayed(service string, n int) {
	if m != nil {
		m.replayed.WithLabelValues(service).Add(float64(n))
	}
}

func (m *Metrics) addDiscarded(service string, n int) {
	if m != nil {
		m.discarded.WithLabelValues(service).Add(float64(n))
	}
}

func (m *Metrics) incRetried(queue string) {
	if m != nil {
		m.retried.WithLabelValues(queue).Inc()
	}
}

func (m *Metrics) incWaited(queue, reason string) {
	if m != nil {
		m.waited.WithLabelValues(queue, reason).Inc()
	}
}

func (m *Metrics) setUnavailable(queue string, v bool) {
	if m != nil {
		f := 0.0
		if v {
			f = 1
		}
		m.unavailable.WithLabelValues(queue).Set(f)
	}
}

// backlogCollector reports, at scrape time, how many events of one service's outbox await their
// confirm and how old the oldest is: the relay's lag.
type backlogCollector struct {
	pool    *pgxpool.Pool
	service string
	queue   string
	pending *prometheus.Desc
	age     *prometheus.Desc
}

func newBacklogCollector(pool *pgxpool.Pool, service, queue string) *backlogCollector {
	labels := prometheus.Labels{"service": service}
	return &backlogCollector{
		pool: pool, service: service, queue: queue,
		pending: prometheus.NewDesc("pizza_outbox_pending",
			"Events written but not yet confirmed by the broker.", nil, labels),
		age: prometheus.NewDesc("pizza_outbox_oldest_pending_age_seconds",
			"Age of the oldest event not yet confirmed by the broker (0 when none).", nil, labels),
	}
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.age
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, age, err := pendingBacklog(ctx, c.pool, c.queue)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age.Seconds())
}

// pendingBacklog counts the relay queue's unfinished jobs and the age of the oldest one.
func pendingBacklog(ctx context.Context, pool *pgxpool.Pool, queue string) (int64, time.Duration, error) {
	const q = `
SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
FROM outbox_events
WHERE queue = $1 AND state IN ('available', 'pending', 'retryable', 'running', 'scheduled')`
	var (
		n   int64
		age float64
	)
	if err := pool.QueryRow(ctx, q, customPlan, queue).Scan(&n, &age); err != nil {
		return 0, 0, err
	}
	return n, time.Duration(age * float64(time.Second)), nil
}
