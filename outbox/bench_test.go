package outbox

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

type wakeArgs struct{}

func (wakeArgs) Kind() string { return "bench_wake" }

// BenchmarkWrite measures what the outbox adds to a business transaction (one row of business
// data plus one event), for the two designs the package could use, against the transaction with
// no event at all. Run in parallel, as requests are. The ratio to "no-event" is the cost.
func BenchmarkWrite(b *testing.B) {
	_, pool := dbtest.NewDatabase(b, db.Order)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
CREATE TABLE bench_business (id bigserial PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE bench_outbox (id bigserial PRIMARY KEY, event jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`)
	require.NoError(b, err)
	o, err := New(pool, Config{Service: "bench"})
	require.NoError(b, err)
	ev, err := NewEvent("order.placed", "12345", "order", map[string]any{"pizza": "pepperoni", "qty": 2, "region": "gangnam"})
	require.NoError(b, err)
	body := []byte(`{"pizza": "pepperoni", "qty": 2, "region": "gangnam"}`)

	business := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO bench_business (body) VALUES ($1)`, body)
		return err
	}
	cases := []struct {
		name  string
		write func(tx pgx.Tx) error
	}{
		{"no-event", func(pgx.Tx) error { return nil }},
		{"river-job-is-the-outbox-row", func(tx pgx.Tx) error {
			return o.Write(ctx, tx, ev)
		}},
		{"outbox-table-plus-river-wake-job", func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO bench_outbox (event) VALUES ($1)`, ev); err != nil {
				return err
			}
			_, err := o.client.InsertTx(ctx, tx, wakeArgs{}, &river.InsertOpts{Queue: "bench"})
			return err
		}},
		{"outbox-table-plus-notify", func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO bench_outbox (event) VALUES ($1)`, ev); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `SELECT pg_notify('bench', '')`)
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(8) // 16 writers on the 2-core machine
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						if err := business(tx); err != nil {
							return err
						}
						return c.write(tx)
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	// As the services write: an outbox.Tx, whose event insert goes out with the COMMIT.
	b.Run("river-job-in-an-outbox-tx", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				err := InTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
					if err := business(tx); err != nil {
						return err
					}
					return o.Write(ctx, tx, ev)
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkRelay measures the relay alone: b.N events are committed first, then the timer runs
// from the relay's start until the broker has confirmed every one. Reports events/s.
func BenchmarkRelay(b *testing.B) {
	_, pool := dbtest.NewDatabase(b, db.Order)
	names := outboxtest.NewNames(b)
	q := QueueSpec{Name: names.Queue("bench"), Keys: []string{"#"}}
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(b, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(b, err)
	require.NoError(b, declareQueue(ch, names.Exchange, q))
	ctx := context.Background()

	pub := NewPublisher(PublisherConfig{URL: outboxtest.URL(), Exchange: names.Exchange})
	defer pub.Close()
	o, err := New(pool, Config{Service: "bench", Publisher: pub})
	require.NoError(b, err)
	for i := 0; i < b.N; i += 500 {
		evs := make([]Event, min(500, b.N-i))
		for j := range evs {
			evs[j], err = NewEvent("bench.event", "1", "bench", map[string]int{"i": i + j})
			require.NoError(b, err)
		}
		require.NoError(b, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return o.Write(ctx, tx, evs...) }))
	}

	b.ResetTimer()
	start := time.Now()
	require.NoError(b, o.Start(ctx))
	defer o.Stop(ctx) //nolint:errcheck
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		n, _, err := o.Backlog(ctx)
		require.NoError(b, err)
		if n == 0 {
			break
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.StopTimer()
	_, _ = ch.QueuePurge(q.Name, false)
}

// BenchmarkCommitToApplied measures freshness: from the commit of one event to its handler
// running in a consumer, one event at a time through the real relay and broker. Reports p50 and
// p99 in milliseconds.
func BenchmarkCommitToApplied(b *testing.B) {
	// relay: the commit wakes the relay, which fetches the job and publishes it.
	// direct: the committing process publishes the events itself (Config.DirectPublish).
	for _, direct := range []bool{false, true} {
		b.Run(map[bool]string{false: "relay", true: "direct"}[direct], func(b *testing.B) { benchCommitToApplied(b, direct) })
	}
}

func benchCommitToApplied(b *testing.B, direct bool) {
	bb := &bundle{}
	_, bb.pool = dbtest.NewDatabase(b, db.Order)
	bb.names = outboxtest.NewNames(b)
	bb.queue = QueueSpec{Name: bb.names.Queue("bench"), Keys: []string{"#"}}
	ctx := context.Background()

	pub := NewPublisher(PublisherConfig{URL: outboxtest.URL(), Exchange: bb.names.Exchange})
	defer pub.Close()
	o, err := New(bb.pool, Config{Service: "bench", Publisher: pub, DirectPublish: direct})
	require.NoError(b, err)
	require.NoError(b, o.Start(ctx))
	defer o.Stop(ctx) //nolint:errcheck

	applied := make(chan struct{}, 1)
	c := NewConsumer(bb.pool, ConsumerConfig{URL: outboxtest.URL(), Exchange: bb.names.Exchange, Queue: bb.queue},
		EachEvent(func(context.Context, pgx.Tx, Event) error { applied <- struct{}{}; return nil }))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(cctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(b, c.Connected, 10*time.Second, time.Millisecond)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		ev, err := NewEvent("bench.event", "1", "bench", nil)
		require.NoError(b, err)
		var start time.Time
		// InTx, as the services write: after the commit it wakes the relay, or publishes directly.
		require.NoError(b, InTx(ctx, bb.pool, func(ctx context.Context, tx pgx.Tx) error {
			start = time.Now() // from the commit on, give or take the insert
			return o.Write(ctx, tx, ev)
		}))
		<-applied
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
