package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox"
)

// benchSettings are pizza bench's flags.
type benchSettings struct {
	duration   time.Duration
	clients    int
	regions    int
	rate       int
	record     string
	subs       int // --subscribers: the idle-subscriber measurement instead
	cpuprofile string
	memprofile string
}

func cmdBench(ctx context.Context, c cli, args []string) error {
	fs := newFlagSet("bench", "[flags]", `
Measure the whole system against the machine's own limit: bring it up in this process on its
own databases (pizza_bench_*) and queues, drive placeOrder through the real GraphQL endpoint
(closed loop, or open loop at --rate), and compare with the bare SQL transaction the accept path
needs, driven directly with pgx at the same concurrency. PostgreSQL and RabbitMQ must run.`)
	var s benchSettings
	short := fs.Bool("short", false, "a 20s run (the default is 60s)")
	fs.DurationVar(&s.duration, "duration", 0, "how long each phase runs (overrides --short)")
	fs.IntVar(&s.clients, "clients", 64, "concurrent closed-loop clients (or open-loop workers)")
	fs.IntVar(&s.regions, "regions", 8, "regions, with two open stores each")
	fs.IntVar(&s.rate, "rate", 0, "open loop: orders per second to offer (0: closed loop)")
	fs.StringVar(&s.record, "record", "", "append the result to this markdown file (BENCHMARKS.md)")
	fs.StringVar(&s.cpuprofile, "cpuprofile", "", "write a CPU profile of the system phase (with --subscribers: of the BFF while it pushes) to this file")
	fs.StringVar(&s.memprofile, "memprofile", "", "write the allocation profile of the run (with --subscribers: the BFF's heap, subscribers connected) to this file")
	fs.IntVar(&s.subs, "subscribers", 0, "instead: measure this many idle myPage subscribers on one BFF")
	rest, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef(fs, "unexpected arguments %q", rest)
	case s.duration < 0:
		return usagef(fs, "--duration must not be negative")
	case s.clients < 1:
		return usagef(fs, "--clients must be at least 1")
	case s.regions < 1:
		return usagef(fs, "--regions must be at least 1")
	case s.rate < 0:
		return usagef(fs, "--rate must not be negative")
	case s.subs < 0:
		return usagef(fs, "--subscribers must not be negative")
	}
	if s.duration == 0 {
		s.duration = 60 * time.Second
		if *short {
			s.duration = 20 * time.Second
		}
	}
	cfg, logger, err := c.config()
	if err != nil {
		return err
	}
	return bench(ctx, cfg, s, c.stdout, logger)
}

// bench measures the whole system against the machine's own limit: it brings the system up in
// this process on its own databases and queues, drives placeOrder through the real GraphQL
// endpoint (closed loop, or open loop at --rate), and compares with the bare SQL transaction the
// accept path needs, driven directly with pgx at the same concurrency.
func bench(ctx context.Context, cfg config, s benchSettings, stdout io.Writer, logger *slog.Logger) error {
	cpuprofile, memprofile := &s.cpuprofile, &s.memprofile
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if s.subs > 0 {
		report, err := benchSubscribers(ctx, cfg, s.subs, *cpuprofile, *memprofile, stdout)
		if err == nil && s.record != "" {
			err = appendRecord(s.record, report, s)
		}
		return err
	}

	cfg, err := benchConfig(ctx, cfg, quiet)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pizza bench: %s per phase, %d clients, %d regions, %s\n", s.duration, s.clients, s.regions, loopName(s))

	base, err := runBaseline(ctx, cfg, s)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	fmt.Fprintf(stdout, "baseline (pgx, same transaction): %.0f tx/s, p50 %s p99 %s\n", base.perSecond, base.p(50), base.p(99))

	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(sctx, cfg, nil, quiet, io.Discard) }()
	defer func() { stop(); <-served }()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	ours, err := runOurs(ctx, cfg, s)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	if *memprofile != "" { // allocations since the process began: mostly the system phase's
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
		if err != nil {
			return err
		}
	}
	ratio := ours.perSecond / base.perSecond
	report := ours.format(base, ratio, s)
	fmt.Fprint(stdout, report)
	if s.record != "" {
		return appendRecord(s.record, report, s)
	}
	return nil
}

func loopName(s benchSettings) string {
	if s.rate > 0 {
		return fmt.Sprintf("open loop at %d orders/s", s.rate)
	}
	return "closed loop"
}

// benchConfig points every component at fresh bench databases, its own exchange and queues, and
// free ports.
func benchConfig(ctx context.Context, cfg config, logger *slog.Logger) (config, error) {
	for _, s := range db.Services {
		u, err := db.WithDatabase(cfg.Common.DatabaseURL, "pizza_bench_"+string(s))
		if err != nil {
			return cfg, err
		}
		if err := dropDatabase(ctx, u); err != nil {
			return cfg, err
		}
		sc := cfg.service(s)
		sc.DatabaseURL = u
		addr, err := freePort()
		if err != nil {
			return cfg, err
		}
		sc.Addr, sc.URL = addr, "http://"+addr
	}
	addr, err := freePort()
	if err != nil {
		return cfg, err
	}
	cfg.BFF.HTTPAddr = addr
	cfg.BFF.OpsAddr = "" // the bench reads no BFF metrics: a running `make run` keeps its ops port
	cfg.Common.Seed = false
	cfg.BFF.SubscriberBuffer = 1024
	cfg.Common.Exchange = "pizza.events.bench"
	cfg.Common.QueueSuffix = ".bench"
	if err := purgeBenchQueues(cfg); err != nil {
		return cfg, err
	}
	return cfg, migrate(ctx, cfg, nil, logger)
}

func dropDatabase(ctx context.Context, dbURL string) error {
	name := dbURL[strings.LastIndex(dbURL, "/")+1:]
	name, _, _ = strings.Cut(name, "?")
	admin, err := db.WithDatabase(dbURL, "postgres")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func purgeBenchQueues(cfg config) error {
	conn, err := amqp.Dial(cfg.Common.AMQPURL)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	for _, s := range db.Services {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		q := queueSpec(cfg, s)
		_, _ = ch.QueueDelete(q.Name, false, false, false)
		_, _ = ch.QueueDelete(q.DLQ(), false, false, false)
		_ = ch.Close()
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// phase is what one run measured.
type phase struct {
	n         int64
	errors    int64
	perSecond float64
	latencies []time.Duration
	fresh     []time.Duration
	cpu       time.Duration
	// host is the machine's busy CPU over the phase and the part of it PostgreSQL and RabbitMQ
	// processes on this host used (zero where /proc is missing).
	host      time.Duration
	hostParts map[string]time.Duration
	backlog   []string
	grew      bool
	heapMiB   float64
	// subscriptionsLost counts watching subscriptions that ended before the run did.
	subscriptionsLost int64
}

func (p *phase) p(q int) time.Duration { return percentile(p.latencies, q) }

func percentile(d []time.Duration, q int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*q/100)].Round(10 * time.Microsecond)
}

// drive runs one load phase: closed loop (each client sends its next request when the last one
// answers) or open loop (requests start on a fixed schedule; latency counts from the scheduled
// time, so a stall is not hidden).
func drive(ctx context.Context, s benchSettings, do func(ctx context.Context, client int) error) *phase {
	var (
		p    phase
		mu   sync.Mutex
		wg   sync.WaitGroup
		n    atomic.Int64
		errs atomic.Int64
	)
	ctx, cancel := context.WithTimeout(ctx, s.duration)
	defer cancel()
	record := func(start time.Time, err error) {
		if err != nil && ctx.Err() != nil {
			return // cut off by the end of the phase
		}
		if err != nil {
			errs.Add(1)
			return
		}
		n.Add(1)
		d := time.Since(start)
		mu.Lock()
		p.latencies = append(p.latencies, d)
		mu.Unlock()
	}
	started := time.Now()
	if s.rate <= 0 {
		for c := range s.clients {
			wg.Go(func() {
				for ctx.Err() == nil {
					start := time.Now()
					record(start, do(ctx, c))
				}
			})
		}
	} else {
		work := make(chan time.Time, s.rate)
		for c := range s.clients {
			wg.Go(func() {
				for at := range work {
					record(at, do(context.WithoutCancel(ctx), c))
				}
			})
		}
		interval := time.Second / time.Duration(s.rate)
		next := time.Now()
		for ctx.Err() == nil {
			select {
			case work <- next:
			default:
				errs.Add(1) // every worker busy and the queue full: the system fell behind
			}
			next = next.Add(interval)
			time.Sleep(time.Until(next))
		}
		close(work)
	}
	wg.Wait()
	p.n, p.errors = n.Load(), errs.Load()
	p.perSecond = float64(p.n) / time.Since(started).Seconds()
	return &p
}

// runBaseline drives the accept path's SQL with pgx alone: the availability SELECT on the store
// database, then one transaction on the order database inserting the order and its outbox job.
func runBaseline(ctx context.Context, cfg config, s benchSettings) (*phase, error) {
	storePool, err := pgxpool.New(ctx, cfg.Store.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer storePool.Close()
	orderPool, err := pgxpool.New(ctx, cfg.Order.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer orderPool.Close()
	for r := range s.regions {
		if _, err := storePool.Exec(ctx, `INSERT INTO stores (name, region, open) VALUES ($1, $2, true), ($1 || '-2', $2, true)`,
			fmt.Sprint("bench-", r), fmt.Sprint("region-", r)); err != nil {
			return nil, err
		}
	}
	ev, err := outbox.NewEvent("order.placed", "1", "order", map[string]any{"customerId": "c", "pizza": "bench", "qty": 1, "region": "region-0"})
	if err != nil {
		return nil, err
	}
	args, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	p := drive(ctx, s, func(ctx context.Context, c int) error {
		region := fmt.Sprint("region-", c%s.regions)
		var open bool
		if err := storePool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stores WHERE region = $1 AND open)`, region).Scan(&open); err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, orderPool, func(tx pgx.Tx) error {
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO orders (customer_id, pizza, qty, region, status) VALUES ($1, 'bench', 1, $2, 'ORDERED') RETURNING id`,
				fmt.Sprint("c", c), region).Scan(&id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state) VALUES ($1, 'outbox_relay', 32767, 'outbox', 'available')`, args)
			return err
		})
	})
	// The system starts from empty tables; nothing of the baseline is relayed.
	if _, err := orderPool.Exec(ctx, `TRUNCATE orders, river_job`); err != nil {
		return nil, err
	}
	if _, err := storePool.Exec(ctx, `TRUNCATE store_orders, stores`); err != nil {
		return nil, err
	}
	return p, nil
}

// runOurs drives placeOrder through the GraphQL endpoint, each client watching its own customer's
// myPage on a websocket to time freshness (placeOrder acknowledged -> RECEIVED pushed).
func runOurs(ctx context.Context, cfg config, s benchSettings) (*phase, error) {
	base := "http://" + cfg.BFF.HTTPAddr
	secret, err := cfg.authSecret(slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	auth, err := graph.NewAuth(secret)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, cfg); err != nil {
		return nil, err
	}
	admin, _ := auth.Mint(model.RoleAdmin, "", time.Hour)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: s.clients * 2}}
	for r := range s.regions {
		for _, suffix := range []string{"", "-2"} {
			if _, err := postGQL(ctx, hc, base, admin, `mutation($n: String!, $r: String!) { registerStore(input: {name: $n, region: $r, open: true}) { id } }`,
				map[string]any{"n": fmt.Sprint("bench-", r, suffix), "r": fmt.Sprint("region-", r)}); err != nil {
				return nil, fmt.Errorf("register stores: %w", err)
			}
		}
	}

	var (
		acked    sync.Map // orderId -> time placeOrder answered
		received sync.Map // orderId -> time RECEIVED was pushed
		freshMu  sync.Mutex
		fresh    []time.Duration
	)
	match := func(orderID string, ackAt, recvAt time.Time) {
		freshMu.Lock()
		fresh = append(fresh, recvAt.Sub(ackAt))
		freshMu.Unlock()
	}
	tokens := make([]string, s.clients)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var (
		watchers          sync.WaitGroup
		subscriptionsLost atomic.Int64
	)
	for c := range s.clients {
		tokens[c], _ = auth.Mint(model.RoleCustomer, fmt.Sprint("bench-", c), 2*time.Hour)
		conn, err := benchSubscribe(wctx, base, tokens[c], fmt.Sprint("bench-", c))
		if err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		watchers.Go(func() {
			defer conn.CloseNow()
			for {
				data, err := benchRead(wctx, conn)
				if err != nil {
					if wctx.Err() == nil {
						subscriptionsLost.Add(1)
					}
					return
				}
				var m struct {
					Type    string
					Payload struct {
						Data struct {
							MyPage struct{ OrderID, Status string }
						}
					}
				}
				if json.Unmarshal(data, &m) != nil || m.Type != "next" || m.Payload.Data.MyPage.Status != "RECEIVED" {
					continue
				}
				now, id := time.Now(), m.Payload.Data.MyPage.OrderID
				if at, ok := acked.Load(id); ok {
					match(id, at.(time.Time), now)
				} else {
					received.Store(id, now)
				}
			}
		})
	}

	backlogStart := make(chan []int64, 1)
	go func() {
		time.Sleep(s.duration / 4)
		backlogStart <- backlogCounts(ctx, cfg)
	}()
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	hostBefore, hostOK := readHostCPU()
	const place = `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { id status } }`
	p := drive(ctx, s, func(ctx context.Context, c int) error {
		in := map[string]any{"customerId": fmt.Sprint("bench-", c), "pizza": "bench", "qty": 1, "region": fmt.Sprint("region-", c%s.regions)}
		data, err := postGQL(ctx, hc, base, tokens[c], place, map[string]any{"in": in})
		if err != nil {
			return err
		}
		now := time.Now()
		var out struct{ PlaceOrder struct{ ID, Status string } }
		if err := json.Unmarshal(data, &out); err != nil {
			return err
		}
		if out.PlaceOrder.Status != "ORDERED" {
			return fmt.Errorf("order %s is %s", out.PlaceOrder.ID, out.PlaceOrder.Status)
		}
		if at, ok := received.LoadAndDelete(out.PlaceOrder.ID); ok {
			match(out.PlaceOrder.ID, now, at.(time.Time))
		} else {
			acked.Store(out.PlaceOrder.ID, now)
		}
		return nil
	})
	if hostAfter, ok := readHostCPU(); ok && hostOK {
		p.host, p.hostParts = hostAfter.since(hostBefore)
	}
	var after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	p.cpu = time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.heapMiB = float64(ms.HeapInuse) / (1 << 20)

	end := backlogCounts(ctx, cfg)
	start := <-backlogStart
	var total0, total1 int64
	for i := range end {
		total0 += start[i]
		total1 += end[i]
	}
	p.grew = total1 > total0+int64(p.perSecond) // more than a second's worth of new backlog
	names := backlogNames(cfg)
	for i, n := range end {
		p.backlog = append(p.backlog, fmt.Sprintf("%s=%d", names[i], n))
	}
	// Wait for the last RECEIVED pushes (all of them, or ten seconds) before stopping the watchers.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		freshMu.Lock()
		seen := int64(len(fresh))
		freshMu.Unlock()
		if seen >= p.n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopWatch()
	watchers.Wait()
	freshMu.Lock()
	p.fresh = fresh
	freshMu.Unlock()
	p.subscriptionsLost = subscriptionsLost.Load()
	return p, nil
}

func waitReady(ctx context.Context, cfg config) error {
	addrs := []string{cfg.BFF.HTTPAddr}
	for _, s := range db.Services {
		addrs = append(addrs, cfg.service(s).Addr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		for {
			resp, err := http.Get("http://" + a + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s never became ready", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return ctx.Err()
}

func postGQL(ctx context.Context, hc *http.Client, base, tok, query string, vars map[string]any) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data   json.RawMessage
		Errors []struct{ Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if len(out.Errors) > 0 {
		return nil, errors.New(out.Errors[0].Message)
	}
	return out.Data, nil
}

func benchSubscribe(ctx context.Context, base, tok, customer string) (*websocket.Conn, error) {
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	send := func(v any) error {
		b, _ := json.Marshal(v)
		return conn.Write(ctx, websocket.MessageText, b)
	}
	if err := send(map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + tok}}); err != nil {
		return nil, err
	}
	if _, _, err := conn.Read(ctx); err != nil { // connection_ack
		return nil, err
	}
	return conn, send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($c: ID!) { myPage(customerId: $c) { orderId status version } }`,
		"variables": map[string]any{"c": customer},
	}})
}

// benchRead returns the next message of a graphql-transport-ws subscription, answering the
// server's keep-alive pings on the way (unanswered, the BFF closes the socket).
func benchRead(ctx context.Context, conn *websocket.Conn) ([]byte, error) {
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		if !strings.Contains(string(data), `"type":"ping"`) {
			return data, nil
		}
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`)); err != nil {
			return nil, err
		}
	}
}

func backlogNames(cfg config) []string {
	var names []string
	for _, s := range db.Services {
		names = append(names, "outbox."+string(s))
	}
	for _, s := range db.Services {
		names = append(names, queueSpec(cfg, s).Name)
	}
	return names
}

// backlogCounts reads each service's unrelayed outbox jobs, then each service queue's depth.
func backlogCounts(ctx context.Context, cfg config) []int64 {
	var out []int64
	for _, s := range db.Services {
		var n int64
		if conn, err := pgx.Connect(ctx, cfg.service(s).DatabaseURL); err == nil {
			_ = conn.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE state IN ('available','retryable','running','scheduled')`).Scan(&n)
			conn.Close(ctx)
		}
		out = append(out, n)
	}
	conn, err := amqp.Dial(cfg.Common.AMQPURL)
	if err != nil {
		return append(out, make([]int64, len(db.Services))...)
	}
	defer conn.Close()
	for _, s := range db.Services {
		var n int64
		if ch, err := conn.Channel(); err == nil {
			if q, err := ch.QueueDeclarePassive(queueSpec(cfg, s).Name, true, false, false, false, nil); err == nil {
				n = int64(q.Messages)
			}
			_ = ch.Close()
		}
		out = append(out, n)
	}
	return out
}

func (p *phase) format(base *phase, ratio float64, s benchSettings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ours (GraphQL placeOrder, whole system in one process): %.0f orders/s, %d errors\n", p.perSecond, p.errors)
	fmt.Fprintf(&b, "  placeOrder latency: p50 %s  p95 %s  p99 %s\n", p.p(50), p.p(95), p.p(99))
	fmt.Fprintf(&b, "  freshness (ack -> RECEIVED pushed): p50 %s  p99 %s  (%d of %d orders seen; %d subscriptions lost)\n",
		percentile(p.fresh, 50), percentile(p.fresh, 99), len(p.fresh), p.n, p.subscriptionsLost)
	fmt.Fprintf(&b, "  backlog at end: %s (grew: %v)\n", strings.Join(p.backlog, " "), p.grew)
	if p.n > 0 {
		fmt.Fprintf(&b, "  CPU per order (whole process, both cores): %s; heap in use %.0f MiB\n", p.cpu/time.Duration(p.n), p.heapMiB)
		if p.host > 0 {
			per := func(d time.Duration) time.Duration { return (d / time.Duration(p.n)).Round(time.Microsecond) }
			fmt.Fprintf(&b, "  machine CPU per order (/proc, every process on this host): %s, of which PostgreSQL %s, RabbitMQ %s\n",
				per(p.host), per(p.hostParts["PostgreSQL"]), per(p.hostParts["RabbitMQ"]))
		}
	}
	fmt.Fprintf(&b, "  ratio ours / baseline: %.2f (baseline %.0f tx/s, p99 %s)\n", ratio, base.perSecond, base.p(99))
	return b.String()
}

// appendRecord appends a dated, attributed result to the benchmark log.
func appendRecord(path, report string, s benchSettings) error {
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	settings := fmt.Sprintf("%s per phase, %d clients, %d regions, %s", s.duration, s.clients, s.regions, loopName(s))
	if s.subs > 0 {
		settings = fmt.Sprintf("%d idle myPage subscribers on one BFF", s.subs)
	}
	_, err = fmt.Fprintf(f, "\n### %s `pizza bench` (commit %s)\n\nMachine: %d cores (%s), Go %s. Settings: %s.\n\n```\n%s```\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), strings.TrimSpace(string(commit)), runtime.NumCPU(), cpu,
		runtime.Version(), settings, report)
	return err
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
