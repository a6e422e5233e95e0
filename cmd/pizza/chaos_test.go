package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// The fault suite: each scenario runs a steady load of orders through the public GraphQL API
// while a fault is injected and healed, then a checker reads all four databases and the
// dead-letter queues and reports what became of every order. In `make test` each scenario is
// short; `make chaos` (PIZZA_CHAOS=<duration>) runs each one's load that long and prints the
// checker's table at the end.

// chaosLength is how long each scenario's load runs, and its fault lasts half of it.
func chaosLength() (time.Duration, bool) {
	if v := os.Getenv("PIZZA_CHAOS"); v != "" {
		d, err := time.ParseDuration(v)
		if err == nil && d > 0 {
			return d, true
		}
	}
	return 4 * time.Second, false
}

// chaosRate is the steady load: placements per second.
const chaosRate = 40

// chaosLoad places orders at a steady rate through the BFF, as an agent for ten customers, and
// cooks what the store received, as its master. It records every answer.
type chaosLoad struct {
	base, agent, master, storeID, region string

	sent        atomic.Int64
	mu          sync.Mutex
	accepted    []string       // order ids the API acknowledged
	firstFailed map[string]int // first answers that were errors, by extensions.code (or TRANSPORT)
	failed      map[string]int // placements that never succeeded, by their last code
	cooked      atomic.Int64
	healed      atomic.Pointer[time.Time] // when the fault ended
}

// chaosClient is the load's HTTP client: a placement's answer may take long while a dependency is
// away, but never forever.
var chaosClient = &http.Client{Timeout: 30 * time.Second}

func (l *chaosLoad) gql(ctx context.Context, tok, query string, vars map[string]any) (map[string]json.RawMessage, string) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, "REQUEST"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := chaosClient.Do(req)
	if err != nil {
		return nil, "TRANSPORT"
	}
	defer resp.Body.Close()
	var out gqlResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Sprintf("HTTP_%d", resp.StatusCode)
	}
	if len(out.Errors) > 0 {
		return nil, cmpOr(out.code(), "NO_CODE")
	}
	return out.Data, ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// run places orders at chaosRate until ctx ends, each in its own goroutine (a slow answer does not
// slow the rate), and waits for every answer.
func (l *chaosLoad) run(ctx context.Context) {
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / chaosRate)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		l.sent.Add(1)
		wg.Go(func() { l.place(context.WithoutCancel(ctx), i) })
	}
}

// retryable are the answers a client retries: the API's UNAVAILABLE, no answer at all, and a
// load balancer's "no backend" (502, 503).
var retryable = []string{"UNAVAILABLE", "TRANSPORT", "HTTP_502", "HTTP_503"}

// place places one order. A retryable failure (UNAVAILABLE, or no answer at all) is retried with
// the same idempotency key, as a careful client would, until 15 s after the fault healed: the
// first answer's code is counted either way, and an order that never succeeded counts as failed.
func (l *chaosLoad) place(ctx context.Context, i int) {
	in := map[string]any{"customerId": fmt.Sprint("chaos-", i%10), "pizza": "불고기피자", "qty": 1 + i%3,
		"region": l.region, "idempotencyKey": uuid.NewString()}
	for attempt := 0; ; attempt++ {
		data, code := l.gql(ctx, l.agent, placeMutation, map[string]any{"in": in})
		if code == "" {
			var o gqlOrder
			if err := json.Unmarshal(data["placeOrder"], &o); err != nil || o.ID == "" {
				code = "BAD_ANSWER"
			} else {
				l.mu.Lock()
				l.accepted = append(l.accepted, o.ID)
				l.mu.Unlock()
				return
			}
		}
		if attempt == 0 {
			l.mu.Lock()
			l.firstFailed[code]++
			l.mu.Unlock()
		}
		healed := l.healed.Load()
		if !slices.Contains(retryable, code) || (healed != nil && time.Since(*healed) > 15*time.Second) {
			l.mu.Lock()
			l.failed[code]++
			l.mu.Unlock()
			return
		}
		time.Sleep(250 * time.Millisecond) // a client's backoff between retries
	}
}

// cook marks every order the store has received cooked, every 200 ms, until ctx ends. Failures
// (the store away, an order already cooked) are retried on the next pass.
func (l *chaosLoad) cook(ctx context.Context) {
	const list = `query($s: ID!) { storeOrders(storeId: $s, status: RECEIVED) { orderId } }`
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		data, code := l.gql(ctx, l.master, list, map[string]any{"s": l.storeID})
		if code != "" {
			continue
		}
		var orders []struct{ OrderID string }
		_ = json.Unmarshal(data["storeOrders"], &orders)
		for _, o := range orders {
			if _, code := l.gql(ctx, l.master, cookMutation, map[string]any{"id": o.OrderID}); code == "" {
				l.cooked.Add(1)
			}
		}
	}
}

// chaosResult is one row of the checker's table.
type chaosResult struct {
	scenario                         string
	sent, accepted                   int64
	firstFailed, failed              map[string]int
	rejected                         int // accepted as REJECTED (STORE_BUSY, NO_OPEN_STORE)
	lost, duplicated, phantom, inDLQ int
	converged                        time.Duration // from the heal to every view agreeing
	ok                               bool
}

var (
	chaosResultsMu sync.Mutex
	chaosResults   []chaosResult
)

// TestMain runs the package's tests (all at once unless -parallel says otherwise: testParallel), then
// closes the shared browser and prints the fault suite's table, when any scenario ran. In a
// replica of the fault suite (pizzaCommand) it is the pizza command instead.
func TestMain(m *testing.M) {
	if os.Getenv(asPizza) != "" { // a replica of the fault suite's (pizzaCommand)
		main()
	}
	flag.Parse()
	parallelDefault()
	if selected("TestChaos") {
		budget.reserve("TestChaos", chaosConns)
	}
	code := m.Run()
	closeBrowser()
	if len(chaosResults) > 0 {
		slices.SortFunc(chaosResults, func(a, b chaosResult) int { return strings.Compare(a.scenario, b.scenario) })
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		length, _ := chaosLength()
		fmt.Fprintf(w, "\nfault suite: %s of load at %d orders/s per scenario, the fault lasting half of it\n", length, chaosRate)
		fmt.Fprintln(w, "scenario\tsent\taccepted\trejected\tretried\tfailed\tlost\tduplicated\tphantom\tleft in DLQ\ttime to converge\t")
		codes := func(m map[string]int) string {
			var out []string
			for code, n := range m {
				out = append(out, fmt.Sprintf("%d %s", n, code))
			}
			slices.Sort(out)
			return cmpOr(strings.Join(out, ", "), "0")
		}
		for _, r := range chaosResults {
			conv := r.converged.Round(10 * time.Millisecond).String()
			if !r.ok {
				conv = "never"
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", r.scenario, r.sent, r.accepted, r.rejected,
				codes(r.firstFailed), codes(r.failed), r.lost, r.duplicated, r.phantom, r.inDLQ, conv)
		}
		_ = w.Flush()
	}
	os.Exit(code)
}

// testParallel is how many of this package's parallel tests run at once unless -parallel says
// otherwise: all of them. go test's default, GOMAXPROCS, suits tests that compute; these mostly
// wait (on systems starting, events flowing, a browser, the fault suite's clock), and what
// bounds how many run at once is PostgreSQL's connections, which the connection budget (budget)
// shares out. A waiting test holds a slot of -parallel, so a small -parallel would let waiting
// tests keep the fault suite, the longest, from starting.
const testParallel = 100

// parallelDefault sets -test.parallel to testParallel when the command line does not set it.
func parallelDefault() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(testParallel))
	}
}

// selected reports whether -run and -skip may select the top-level test named name (by their
// first element; a test it wrongly thinks selected only has connections set aside for nothing).
func selected(name string) bool {
	match := func(flagName string) bool {
		pattern, _, _ := strings.Cut(flag.Lookup(flagName).Value.String(), "/")
		ok, err := regexp.MatchString(pattern, name)
		return err == nil && ok
	}
	skip := flag.Lookup("test.skip").Value.String()
	return match("test.run") && (skip == "" || !match("test.skip"))
}

// chaosSystem is the whole system with every component in a `pizza serve` of its own, so that a
// scenario can stop and restart any of them.
type chaosSystem struct {
	*system
	mu    sync.Mutex
	stops map[db.Service]func()
	// procs, for a scenario of OS processes, is its topology instead.
	procs *procTopology
}

// stop stops the components (SIGTERM, drained).
func (cs *chaosSystem) stop(components ...db.Service) {
	for _, c := range components {
		cs.mu.Lock()
		stop := cs.stops[c]
		cs.mu.Unlock()
		stop()
	}
}

// restart starts the components again, each in its own `pizza serve`, and waits until they are ready.
func (cs *chaosSystem) restart(t *testing.T, components ...db.Service) {
	for _, c := range components {
		stop := cs.start(t, c)
		cs.mu.Lock()
		cs.stops[c] = stop
		cs.mu.Unlock()
	}
}

// chaosScenario is a fault: inject starts it, and the function it returns heals it.
type chaosScenario struct {
	name string
	// env changes the system's environment before anything starts (pointing a URL at a proxy).
	env func(t *testing.T, sys *system)
	// inject starts the fault on the running system and returns what heals it.
	inject func(t *testing.T, cs *chaosSystem) (heal func())
	// mayFail are the codes a placement's first answer may carry while the fault lasts (the
	// retryable UNAVAILABLE when the order service's own database is away): anything else, and
	// any placement that never succeeds, fails the run.
	mayFail []string
	// rejects says whether the fault makes placements REJECTED (STORE_BUSY: the breaker open).
	rejects rejects
	// deadLetters is how many dead letters the fault itself makes (poison it publishes).
	deadLetters int
	// replicas, when set, runs the system as OS processes (see procTopology): that many replicas
	// of every component, the BFF's behind a balancer.
	replicas int
}

// rejects is whether a scenario's fault makes placements REJECTED.
type rejects int

const (
	rejectsNever  rejects = iota // the store stays reachable: no placement is rejected
	rejectsMaybe                 // the store is away for a while, as everything else
	rejectsSurely                // the fault is the store's: placements are rejected
)

// runChaos runs one scenario: the whole system on its own databases and broker names, the load
// for chaosLength (longer when healing takes longer), the fault during its middle half, and then
// the checker.
func runChaos(t *testing.T, sc chaosScenario) {
	length, _ := chaosLength()
	// A loaded machine (CI, other tests) must not time a healthy check out: the slow-store scenario
	// sets its own timeout.
	sys := newSystem(t, map[string]string{"STORE_CHECK_TIMEOUT": "5s"})
	if sc.env != nil {
		sc.env(t, sys)
	}
	cs := &chaosSystem{system: sys, stops: map[db.Service]func(){}}
	var base string
	if sc.replicas > 0 {
		cs.procs, base = newProcTopology(t, sys, sc.replicas)
	} else {
		cs.restart(t, db.Services...)
		base = sys.startBFF(t)
	}
	storeID := registerStore(t, base, "강남점", "강남구")
	l := &chaosLoad{base: base, agent: mint(t, model.RoleAgent, ""), master: mint(t, model.RoleMaster, storeID),
		storeID: storeID, region: "강남구", firstFailed: map[string]int{}, failed: map[string]int{}}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	cookCtx, stopCooking := context.WithCancel(context.Background())
	defer stopCooking()
	loadDone, cookDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(loadDone); l.run(ctx) }()
	go func() { defer close(cookDone); l.cook(cookCtx) }()

	// The schedule (healthy, faulty, healthy) is time itself, not a wait for a condition.
	time.Sleep(length / 4)
	heal := sc.inject(t, cs)
	time.Sleep(length / 2)
	heal() // may take longer than planned (restarts wait for readiness): the load goes on meanwhile
	healed := time.Now()
	l.healed.Store(&healed)
	time.Sleep(length / 4)
	stop()
	<-loadDone // the load's last answers are in (the cook goes on until stopped below)

	res := chaosResult{scenario: sc.name, sent: l.sent.Load()}
	l.mu.Lock()
	accepted := slices.Clone(l.accepted)
	res.firstFailed, res.failed = maps.Clone(l.firstFailed), maps.Clone(l.failed)
	l.mu.Unlock()
	res.accepted = int64(len(accepted))

	res.ok = waitFor(60*time.Second+length, func() bool { return chaosConverged(sys, accepted) })
	res.converged = time.Since(healed)
	stopCooking()
	<-cookDone
	chaosCount(t, sys, accepted, &res)

	chaosResultsMu.Lock()
	chaosResults = append(chaosResults, res)
	chaosResultsMu.Unlock()
	t.Logf("%s: sent %d, accepted %d (rejected %d), first answers failed %v, failed %v, lost %d, duplicated %d, phantom %d, in DLQ %d, converged %v after the heal",
		sc.name, res.sent, res.accepted, res.rejected, res.firstFailed, res.failed, res.lost, res.duplicated, res.phantom, res.inDLQ, res.converged)

	require.True(t, res.ok, "%s: the views never agreed on every accepted order", sc.name)
	require.NotZero(t, res.accepted, "the load placed orders")
	for code := range res.firstFailed {
		require.Contains(t, sc.mayFail, code, "%s: placeOrder answered %s during the fault", sc.name, code)
	}
	require.Empty(t, res.failed, "%s: placements that never succeeded", sc.name)
	require.Zero(t, res.lost, "%s: accepted orders missing from a view", sc.name)
	require.Zero(t, res.duplicated, "%s: effects that happened twice", sc.name)
	require.Zero(t, res.phantom, "%s: orders written that no placement was told about", sc.name)
	switch sc.rejects {
	case rejectsNever:
		require.Zero(t, res.rejected, "%s: placements rejected although the store was reachable", sc.name)
	case rejectsSurely:
		require.NotZero(t, res.rejected, "%s: the fault made placements REJECTED", sc.name)
	}
	require.Equal(t, sc.deadLetters, res.inDLQ, "%s: dead letters (only the scenario's own poison belongs there)", sc.name)
}

// TestChaos is the fault suite: its scenarios run one after another (each is a whole system under
// load, up to ten processes, and together they would take more of PostgreSQL's 100 connections
// than the rest of the suite leaves), all of them beside the package's other tests. `make chaos`
// runs them at length; -run 'TestChaos/PostgresDown' runs one.
func TestChaos(t *testing.T) {
	t.Parallel()
	// Its connections are set aside (TestMain): it is the longest run of the package, and
	// goes first.
	budget.hold(t, chaosConns)
	for _, sc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"RollingRestart", chaosRollingRestart},
		{"DownstreamServicesDown", chaosDownstreamServicesDown},
		{"KillEverything", chaosKillEverything},
		{"CustomerCenterDatabaseDown", chaosCustomerCenterDatabaseDown},
		{"PostgresDown", chaosPostgresDown},
		{"RabbitMQDown", chaosRabbitMQDown},
		{"RabbitMQBlackholed", chaosRabbitMQBlackholed},
		{"SlowStoreTripsTheBreaker", chaosSlowStoreTripsTheBreaker},
		{"PoisonMessages", chaosPoisonMessages},
	} {
		t.Run(sc.name, sc.run)
		budget.keep(t.Name(), scenarioConns)
	}
}

// The fault suite's connections: the rolling restart's two replicas of everything (run first)
// hold 42, the other scenarios' systems under load about 25.
const chaosConns, scenarioConns = 42, 25

// waitFor polls cond every 100 ms until it holds or within passes.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chaosConverged reports whether every accepted order has reached a final state that the order
// service, the store, delivery and myPage agree on: cancelled or rejected, or delivered.
func chaosConverged(sys *system, ids []string) bool {
	ctx := context.Background()
	statuses := func(s db.Service, q string) map[string]string {
		rows, err := sys.pools[s].Query(ctx, q, ids)
		if err != nil {
			return nil // the database may still be coming back
		}
		out := map[string]string{}
		for rows.Next() {
			var id, st string
			if rows.Scan(&id, &st) == nil {
				out[id] = st
			}
		}
		if rows.Err() != nil {
			return nil
		}
		return out
	}
	orders := statuses(db.Order, `SELECT id::text, status FROM orders WHERE id::text = ANY($1)`)
	mypage := statuses(db.CustomerCenter, `SELECT order_id, status FROM mypage WHERE order_id = ANY($1)`)
	deliveries := statuses(db.Delivery, `SELECT order_id, status FROM deliveries WHERE order_id = ANY($1)`)
	for _, id := range ids {
		st := orders[id]
		switch st {
		case "CANCELLED", "REJECTED":
			if deliveries[id] == "STARTED" {
				return false
			}
		case "DELIVERY_STARTED":
			if deliveries[id] != "STARTED" {
				return false
			}
		default:
			return false // not final yet
		}
		if mypage[id] != st {
			return false
		}
	}
	return true
}

// chaosCount fills in what the checker found once the views agreed (or gave up waiting):
// accepted orders missing from a view (lost), effects recorded twice (duplicated), orders the
// order service holds that no placement was told about (phantom), and dead letters.
func chaosCount(t *testing.T, sys *system, ids []string, res *chaosResult) {
	ctx := context.Background()
	count := func(s db.Service, q string, args ...any) int {
		var n int
		require.NoError(t, sys.pools[s].QueryRow(ctx, q, args...).Scan(&n), q)
		return n
	}
	res.lost = len(ids) - count(db.CustomerCenter, `SELECT count(*) FROM mypage WHERE order_id = ANY($1) AND status <> 'ORDERED'`, ids)
	res.lost += len(ids) - count(db.Order, `SELECT count(*) FROM orders WHERE id::text = ANY($1)`, ids)
	for s, typ := range map[db.Service]string{db.Order: "order.placed", db.Store: "store.order_received", db.Delivery: "delivery.started"} {
		res.duplicated += count(s, `SELECT count(*) FROM (SELECT order_id FROM outbox_events WHERE type = $1 GROUP BY order_id HAVING count(*) > 1) d`, typ)
	}
	res.rejected = count(db.Order, `SELECT count(*) FROM orders WHERE id::text = ANY($1) AND status = 'REJECTED'`, ids)
	res.phantom = count(db.Order, `SELECT count(*) FROM orders WHERE NOT (id::text = ANY($1))`, ids)

	// Dead letters: parked in each service's database (while it runs), or still in its DLQ.
	for _, s := range db.Services {
		res.inDLQ += count(s, `SELECT count(*) FROM outbox_dead_letters`)
	}
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	for _, s := range db.Services {
		ch, err := conn.Channel()
		require.NoError(t, err)
		q, err := ch.QueueDeclarePassive(string(s)+".events"+sys.env["PIZZA_QUEUE_SUFFIX"]+".dlq", true, false, false, false, nil)
		if err == nil {
			res.inDLQ += q.Messages
		}
		_ = ch.Close()
	}
}

// Delivery and customercenter stopped in the middle of the load, with the store cooking
// meanwhile: no placement fails, and when they return every view catches up.
func chaosDownstreamServicesDown(t *testing.T) {
	runChaos(t, chaosScenario{
		name: "delivery and customercenter down",
		inject: func(t *testing.T, cs *chaosSystem) func() {
			cs.stop(db.Delivery, db.CustomerCenter)
			return func() { cs.restart(t, db.Delivery, db.CustomerCenter) }
		},
	})
}

// The original project's zero-downtime check: split into processes, two replicas of everything,
// each replica restarted in turn (SIGTERM, drained, started again) under load: no request fails.
func chaosRollingRestart(t *testing.T) {
	runChaos(t, chaosScenario{
		name:     "rolling restart, one replica at a time",
		replicas: 2,
		inject: func(t *testing.T, cs *chaosSystem) func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, name := range []string{"order#1", "order#2", "store#1", "store#2", "delivery#1", "delivery#2",
					"customercenter#1", "customercenter#2", "bff#1", "bff#2"} {
					cs.procs.restart(t, name)
				}
			}()
			return func() { <-done }
		},
	})
}

// kill -9 of every process at once in the middle of the load, then a restart: placements during
// the outage fail without an answer and are retried with their idempotency keys; nothing
// accepted is lost, nothing happens twice.
func chaosKillEverything(t *testing.T) {
	runChaos(t, chaosScenario{
		name:     "kill -9 of every process",
		replicas: 1,
		rejects:  rejectsMaybe, // the order service may come back before the store, and its breaker opens
		mayFail:  retryable,
		inject: func(t *testing.T, cs *chaosSystem) func() {
			names := cs.procs.names()
			for _, name := range names {
				cs.procs.kill(name)
			}
			return func() {
				for _, name := range names {
					cs.procs.start(t, name)
				}
			}
		},
	})
}

// proxied puts every service database named in keys (or AMQP_URL) behind one fault proxy.
func proxied(proxy **outboxtest.Proxy, keys ...string) func(t *testing.T, sys *system) {
	return func(t *testing.T, sys *system) {
		u, err := url.Parse(sys.env[keys[0]])
		require.NoError(t, err)
		*proxy = outboxtest.NewProxy(t, u.Host)
		for _, k := range keys {
			sys.env[k] = (*proxy).URL(t, sys.env[k])
		}
	}
}

func stopProxy(p **outboxtest.Proxy) func(*testing.T, *chaosSystem) func() {
	return func(t *testing.T, _ *chaosSystem) func() {
		(*p).Stop()
		return func() { require.NoError(t, (*p).Start()) }
	}
}

// The customercenter's database away in the middle of the load: its consumer waits it out
// (nothing dead-lettered), placements never notice, and every accepted order reaches myPage.
func chaosCustomerCenterDatabaseDown(t *testing.T) {
	var p *outboxtest.Proxy
	runChaos(t, chaosScenario{
		name:   "customercenter database down",
		env:    proxied(&p, "CUSTOMERCENTER_DATABASE_URL"),
		inject: stopProxy(&p),
	})
}

// Every service's database away at once (the PostgreSQL server down): placements answer the
// retryable UNAVAILABLE and succeed when retried with their keys; nothing is lost, duplicated or
// dead-lettered.
func chaosPostgresDown(t *testing.T) {
	var p *outboxtest.Proxy
	runChaos(t, chaosScenario{
		name:    "PostgreSQL down",
		env:     proxied(&p, "ORDER_DATABASE_URL", "STORE_DATABASE_URL", "DELIVERY_DATABASE_URL", "CUSTOMERCENTER_DATABASE_URL"),
		inject:  stopProxy(&p),
		mayFail: []string{"UNAVAILABLE"},
		rejects: rejectsMaybe, // the store's database is away too: a check may fail into STORE_BUSY
	})
}

// RabbitMQ away in the middle of the load: placements never fail (the outbox keeps the events),
// and everything flows once it is back.
func chaosRabbitMQDown(t *testing.T) {
	var p *outboxtest.Proxy
	runChaos(t, chaosScenario{
		name:   "RabbitMQ down",
		env:    proxied(&p, "AMQP_URL"),
		inject: stopProxy(&p),
	})
}

// RabbitMQ unreachable without a word (a partition: connections open, nothing moves) in the
// middle of the load: placements never fail, and everything flows once it heals.
func chaosRabbitMQBlackholed(t *testing.T) {
	var p *outboxtest.Proxy
	runChaos(t, chaosScenario{
		name: "RabbitMQ blackholed",
		env:  proxied(&p, "AMQP_URL"),
		inject: func(*testing.T, *chaosSystem) func() {
			p.Blackhole(true)
			return func() { p.Blackhole(false) }
		},
	})
}

// The store's availability check slowed past its timeout in the middle of the load: the breaker
// opens, placements are answered at once as REJECTED / STORE_BUSY (never an error), and once the
// store is quick again the breaker closes and orders are taken.
func chaosSlowStoreTripsTheBreaker(t *testing.T) {
	var slow atomic.Bool
	runChaos(t, chaosScenario{
		name:    "store availability check slowed",
		rejects: rejectsSurely,
		env: func(t *testing.T, sys *system) {
			storeURL, _ := storeProxy(t, func() string { return sys.env["STORE_ADDR"] }, func(r *http.Request, answer func()) {
				if slow.Load() {
					select { // past the check's timeout; ends when the caller gives up
					case <-r.Context().Done():
						return
					case <-time.After(10 * time.Second):
					}
				}
				answer()
			})
			sys.env["STORE_URL"] = storeURL
			sys.env["STORE_CHECK_TIMEOUT"] = "1s"
			sys.env["BREAKER_OPEN_FOR"] = "1s"
		},
		inject: func(*testing.T, *chaosSystem) func() {
			slow.Store(true)
			return func() { slow.Store(false) }
		},
	})
}

// Poison in the middle of the load: bodies that are no events, and events for orders that cannot
// exist, published to the exchange. Each service that gets one dead-letters it at once; nothing
// else is disturbed.
func chaosPoisonMessages(t *testing.T) {
	const n = 10
	runChaos(t, chaosScenario{
		name: "poison messages",
		// order.placed reaches store and customercenter: two dead letters per poison message.
		deadLetters: 2 * 2 * n,
		inject: func(t *testing.T, cs *chaosSystem) func() {
			conn, err := amqp.Dial(outboxtest.URL())
			require.NoError(t, err)
			defer conn.Close()
			ch, err := conn.Channel()
			require.NoError(t, err)
			for i := range n {
				ev, err := outbox.NewEvent("order.placed", fmt.Sprint("poison-", i), "chaos", map[string]any{})
				require.NoError(t, err)
				impossible, err := json.Marshal(ev)
				require.NoError(t, err)
				for _, body := range [][]byte{[]byte(fmt.Sprint("{not json ", i)), impossible} {
					require.NoError(t, ch.PublishWithContext(context.Background(), cs.env["PIZZA_EXCHANGE"], "order.placed", false, false,
						amqp.Publishing{MessageId: uuid.NewString(), ContentType: "application/json", Body: body}))
				}
			}
			return func() {}
		},
	})
}
