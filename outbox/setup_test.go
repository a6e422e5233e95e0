package outbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// bundle is one test's world: its own database (producer and consumer share it), its own
// exchange and queue, and metrics on a private registry.
type bundle struct {
	dbURL   string
	pool    *pgxpool.Pool
	names   outboxtest.Names
	queue   QueueSpec
	metrics *Metrics
}

const testKey = "test.happened"

func setup(t *testing.T) *bundle {
	t.Helper()
	dbURL, pool := dbtest.NewDatabase(t, db.Order)
	_, err := pool.Exec(context.Background(), `CREATE TABLE effects (event_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	names := outboxtest.NewNames(t)
	return &bundle{
		dbURL: dbURL, pool: pool, names: names,
		queue:   QueueSpec{Name: names.Queue("test.events"), Keys: []string{"test.#"}},
		metrics: NewMetrics(prometheus.NewRegistry()),
	}
}

func (b *bundle) publisher(t *testing.T, url string) *Publisher {
	p := NewPublisher(PublisherConfig{URL: url, Exchange: b.names.Exchange, Name: t.Name()})
	t.Cleanup(p.Close)
	return p
}

// outbox starts a relay publishing through url; mod adjusts its config.
func (b *bundle) outbox(t *testing.T, url string, mod func(*Config)) *Outbox {
	t.Helper()
	cfg := Config{Service: "test", Publisher: b.publisher(t, url), Metrics: b.metrics}
	if mod != nil {
		mod(&cfg)
	}
	o, err := New(b.pool, cfg)
	require.NoError(t, err)
	require.NoError(t, o.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = o.Stop(ctx)
	})
	return o
}

// recordEffect is the handler every test uses: one row per application, no uniqueness, so an
// effect applied twice shows up as two rows.
func recordEffect(ctx context.Context, tx pgx.Tx, ev Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID)
	return err
}

// consume runs a consumer until the test ends.
func (b *bundle) consume(t *testing.T, url string, h Handler, mod func(*ConsumerConfig)) *Consumer {
	t.Helper()
	cfg := ConsumerConfig{URL: url, Exchange: b.names.Exchange, Queue: b.queue, Metrics: b.metrics}
	if mod != nil {
		mod(&cfg)
	}
	c := NewConsumer(b.pool, cfg, EachEvent(h))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, c.Connected, 10*time.Second, 5*time.Millisecond, "consumer never connected")
	return c
}

// declare makes the test's queue exist, so events published before a consumer starts are kept.
func (b *bundle) declare(t *testing.T) {
	t.Helper()
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, declareQueue(ch, b.names.Exchange, b.queue))
}

// write commits n events of type key in one transaction and returns their ids.
func (b *bundle) write(t *testing.T, o *Outbox, key string, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, 0, n)
	evs := make([]Event, 0, n)
	for i := range n {
		ev, err := NewEvent(key, fmt.Sprint(i), "test", map[string]int{"i": i})
		require.NoError(t, err)
		evs = append(evs, ev)
		ids = append(ids, ev.ID)
	}
	require.NoError(t, pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		return o.Write(context.Background(), tx, evs...)
	}))
	return ids
}

type effectCount struct{ rows, distinct int }

func (b *bundle) effects(t *testing.T) effectCount {
	t.Helper()
	var c effectCount
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT event_id) FROM effects`).Scan(&c.rows, &c.distinct))
	return c
}

// waitEffects waits until n distinct effects exist, then reports the counts.
func (b *bundle) waitEffects(t *testing.T, n int, within time.Duration) effectCount {
	t.Helper()
	require.Eventually(t, func() bool { return b.effects(t).distinct >= n }, within, 10*time.Millisecond,
		"want %d distinct effects, have %+v", n, b.effects(t))
	return b.effects(t)
}

func (b *bundle) waitBacklogEmpty(t *testing.T, o *Outbox, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		n, _, err := o.Backlog(context.Background())
		return err == nil && n == 0
	}, within, 10*time.Millisecond)
}

func (b *bundle) consumed(outcome string) float64 {
	return testutil.ToFloat64(b.metrics.consumed.WithLabelValues(b.queue.Name, testKey, outcome))
}

// The crash tests run a relay or a consumer in a child process (this test binary, re-executed)
// that dies with os.Exit at the injected point, as a killed pod would: no deferred cleanup, no
// ack, no River completion.
const childEnv = "PIZZA_OUTBOX_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

const exitCrashed = 42

func runChild(role string) int {
	dbURL, exchange, queue := os.Getenv("CHILD_DB"), os.Getenv("CHILD_EXCHANGE"), os.Getenv("CHILD_QUEUE")
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return 2
	}
	crash := func(Event) { os.Exit(exitCrashed) }
	switch role {
	case "relay":
		pub := NewPublisher(PublisherConfig{URL: outboxtest.URL(), Exchange: exchange})
		o, err := New(pool, Config{Service: "test", Publisher: pub, afterConfirm: crash})
		if err != nil {
			return 2
		}
		if err := o.Start(ctx); err != nil {
			return 2
		}
	case "consumer":
		c := NewConsumer(pool, ConsumerConfig{
			URL: outboxtest.URL(), Exchange: exchange,
			Queue: QueueSpec{Name: queue, Keys: []string{"test.#"}}, afterCommit: crash,
		}, EachEvent(recordEffect))
		go func() { _ = c.Run(ctx) }()
	}
	// The crash hook ends the process; until then it lives as long as its parent holds stdin
	// open, so a child can never outlive the test that started it.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 3
}

// startChild re-executes the test binary in role and returns a channel with its exit code.
func (b *bundle) startChild(t *testing.T, role string) <-chan int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "CHILD_DB="+b.dbURL,
		"CHILD_EXCHANGE="+b.names.Exchange, "CHILD_QUEUE="+b.queue.Name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stdin, err := cmd.StdinPipe() // closed when the test ends: the child's signal to go
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = stdin.Close() })
	done := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		done <- cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return done
}
