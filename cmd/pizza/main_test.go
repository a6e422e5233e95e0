package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// testEnv points every service at its own database that does not exist yet, and the broker at
// a test exchange. The test holds a unit of the connection budget until it ends.
func testEnv(t *testing.T) map[string]string {
	budget.hold(t, systemConns)
	names := outboxtest.NewNames(t)
	env := map[string]string{
		"DATABASE_URL":       dbtest.ServerURL(),
		"AMQP_URL":           outboxtest.URL(),
		"PIZZA_EXCHANGE":     names.Exchange,
		"PIZZA_QUEUE_SUFFIX": names.Suffix(),
		"PIZZA_LOG_LEVEL":    "warn",
		"PIZZA_DB_MAX_CONNS": "4", // many systems run at once against one server's 100 connections
		"STORE_CHECK_CONNS":  "1",
		"PIZZA_HTTP_ADDR":    freeAddr(t),
		"PIZZA_OPS_ADDR":     "", // none: replicas of the BFF would share one; tests that read it set it
		"PIZZA_SEED":         "false",
	}
	for _, s := range db.Services {
		env[strings.ToUpper(string(s))+"_DATABASE_URL"] = dbtest.NewEmptyURL(t)
		names.Queue(string(s) + ".events") // deleted when the test ends
	}
	return env
}

// budget bounds how many PostgreSQL connections the package's tests hold at once, out of the
// server's 100: other test packages run beside this one (about 15), each test process keeps a
// few of its own (its run lock, cloning), and a client that finds the server full fails. A test
// that runs services (testEnv) holds systemConns until it ends, as measured for one system with
// every service, its BFF and the test's own pools (pg_stat_activity, by application_name); a test
// that needs more says so first. The budget, not go test's -parallel (testParallel lets every
// test start), is what queues the tests.
var budget = &connBudget{free: 65, reserved: map[string]int{}, holders: map[string]int{}}

// systemConns is what one running system holds at most, rounded up.
const systemConns = 20

// connBudget is a counting semaphore, first come first served, whose units a top-level test
// holds (with its subtests) until it ends. Units reserved for a test are its without waiting.
type connBudget struct {
	mu       sync.Mutex
	free     int
	reserved map[string]int // units set aside, by top-level test
	holders  map[string]int // units held, by top-level test
	queue    []*budgetWait
}

type budgetWait struct {
	n     int
	ready chan struct{}
}

// reserve sets n units aside for the top-level test named top.
func (b *connBudget) reserve(top string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free -= n
	b.reserved[top] += n
}

// hold waits for n units for t's top-level test (none when they were reserved for it) and gives
// them back when t ends; a test that holds units already takes none.
func (b *connBudget) hold(t *testing.T, n int) {
	top, _, _ := strings.Cut(t.Name(), "/")
	w := &budgetWait{n: n, ready: make(chan struct{})}
	b.mu.Lock()
	if b.holders[top] > 0 {
		b.mu.Unlock()
		return
	}
	b.holders[top] = n
	if r, ok := b.reserved[top]; ok { // set aside for it: it has them at once
		delete(b.reserved, top)
		b.free += r - n
		close(w.ready)
	} else {
		b.queue = append(b.queue, w)
		b.grant()
	}
	b.mu.Unlock()
	select {
	case <-w.ready:
	case <-time.After(budgetPatience):
		b.mu.Lock()
		select {
		case <-w.ready: // granted as the wait ran out: take it
		default:
			b.queue = slices.DeleteFunc(b.queue, func(q *budgetWait) bool { return q == w })
			delete(b.holders, top)
			holders, reserved, free := maps.Clone(b.holders), maps.Clone(b.reserved), b.free
			b.mu.Unlock()
			t.Fatalf("waited %s for %d of the test connection budget: %d free, held %v, set aside %v",
				budgetPatience, n, free, holders, reserved)
		}
		b.mu.Unlock()
	}
	t.Cleanup(func() { b.keep(top, 0) })
}

// budgetPatience bounds a test's wait for connections: longer than any test holds them, so that
// running out of it means a test waits for what can never be free, and says so instead of hanging
// until the package's -timeout.
const budgetPatience = 5 * time.Minute

// keep gives back what top holds beyond n units.
func (b *connBudget) keep(top string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if held := b.holders[top]; held > n {
		b.free += held - n
		b.holders[top] = n
		b.grant()
	}
	if n == 0 {
		delete(b.holders, top)
	}
}

// grant admits waiters from the head of the queue while their units are free.
func (b *connBudget) grant() {
	for len(b.queue) > 0 && b.queue[0].n <= b.free {
		b.free -= b.queue[0].n
		close(b.queue[0].ready)
		b.queue = b.queue[1:]
	}
}

// 7. `pizza migrate` twice, and four at once: no error, and every database has the schema of a
// database migrated once.
func TestMigrateTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = run(ctx, []string{"migrate"}, env, io.Discard, io.Discard) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, run(ctx, []string{"migrate"}, env, io.Discard, io.Discard))

	for _, s := range db.Services {
		pool, err := pgxpool.New(ctx, env[strings.ToUpper(string(s))+"_DATABASE_URL"])
		require.NoError(t, err)
		got := dbtest.Schema(t, pool)
		pool.Close()
		_, want := dbtest.NewDatabase(t, s) // migrated once, as the template was
		require.Equal(t, dbtest.Schema(t, want), got, "schema of %s", s)
		require.Contains(t, got, "outbox_inbox")
		require.Contains(t, got, "river_job")
	}
}

func TestMigrateRejectsUnknownService(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"migrate", "pizzeria"}, testEnv(t), io.Discard, io.Discard)
	require.ErrorContains(t, err, `unknown service "pizzeria"`)
}

func TestBadConfigurationIsRefused(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	env["PIZZA_QUEUE_TYPE"] = "stream"
	err := run(context.Background(), []string{"serve"}, env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "PIZZA_QUEUE_TYPE must be classic or quorum")

	env = testEnv(t)
	env["OUTBOX_FETCH_COOLDOWN"] = "500us"
	err = run(context.Background(), []string{"serve"}, env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "OUTBOX_FETCH_COOLDOWN must be at least 1ms")
}

// freeAddr is a loopback address for a component to listen on later. A port the kernel hands
// out for ":0" could be handed out again (to a proxy, a test server, an outgoing connection)
// before the component binds it, so the port is picked below the ephemeral range instead, never
// twice in this process, and checked free.
func freeAddr(t *testing.T) string {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	for range 1000 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow)
		if freePorts.used[port] {
			continue
		}
		freePorts.used[port] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if ln, err := net.Listen("tcp", addr); err == nil {
			_ = ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// The ports freeAddr picks from: below Linux's default ephemeral range (32768-60999).
const freePortLow, freePortHigh = 20000, 32000

var freePorts = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

func get(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve: every component answers /healthz, /readyz (its database and broker) and /metrics, and
// SIGTERM (ctx cancelled) ends it cleanly.
func TestServeProbesAndGracefulShutdown(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	ctx := context.Background()
	require.NoError(t, run(ctx, []string{"migrate"}, env, io.Discard, io.Discard))
	addrs := map[db.Service]string{}
	for _, s := range db.Services {
		addrs[s] = freeAddr(t)
		env[strings.ToUpper(string(s))+"_ADDR"] = addrs[s]
	}

	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(sctx, []string{"serve"}, env, io.Discard, io.Discard) }()
	for s, addr := range addrs {
		base := "http://" + addr
		require.Eventually(t, func() bool { c, _ := get(t, base+"/readyz"); return c == http.StatusOK },
			15*time.Second, 10*time.Millisecond, "%s never became ready", s)
		code, body := get(t, base+"/healthz")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "ok\n", body)
		code, body = get(t, base+"/metrics")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, fmt.Sprintf(`pizza_outbox_pending{service="%s"} 0`, s))
	}

	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	code, _ := get(t, "http://"+addrs[db.Order]+"/healthz")
	require.Zero(t, code, "the listener is closed after shutdown")
}

// /readyz is false while the broker cannot be reached, and the process keeps running.
func TestReadyzReportsUnreachableBroker(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	ctx := context.Background()
	require.NoError(t, run(ctx, []string{"migrate", "order"}, env, io.Discard, io.Discard))
	env["AMQP_URL"] = "amqp://guest:guest@" + freeAddr(t) + "/" // nothing listens there
	env["ORDER_ADDR"] = freeAddr(t)

	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(sctx, []string{"serve", "order"}, env, io.Discard, io.Discard) }()
	base := "http://" + env["ORDER_ADDR"]
	require.Eventually(t, func() bool { c, _ := get(t, base+"/healthz"); return c == http.StatusOK }, 15*time.Second, 10*time.Millisecond)
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "rabbitmq: not connected")
	stop()
	require.NoError(t, <-done)
}

// Pools plan for data in memory (random_page_cost 1.1), the relay's commits do not wait for
// the disk, and connection attempts give up after defaultConnectTimeout; a URL that sets any of
// them keeps its own.
func TestPoolSessionSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, _ := dbtest.NewDatabase(t, db.Order)
	show := func(pool *pgxpool.Pool, name string) string {
		t.Helper()
		var v string
		require.NoError(t, pool.QueryRow(ctx, "SHOW "+name).Scan(&v))
		return v
	}
	for _, tc := range []struct {
		url                  string
		async                bool
		pageCost, syncCommit string
	}{
		{url, false, "1.1", "on"},
		{url, true, "1.1", "off"},
		{withParam(url, "random_page_cost=2"), false, "2", "on"},
	} {
		pool, err := openPool(ctx, tc.url, 1, tc.async)
		require.NoError(t, err)
		require.Equal(t, tc.pageCost, show(pool, "random_page_cost"), tc.url)
		require.Equal(t, tc.syncCommit, show(pool, "synchronous_commit"), tc.url)
		require.Equal(t, defaultConnectTimeout, pool.Config().ConnConfig.ConnectTimeout, tc.url)
		pool.Close()
	}
	pool, err := openPool(ctx, withParam(url, "connect_timeout=2"), 1, false)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, pool.Config().ConnConfig.ConnectTimeout, "the URL's own")
	pool.Close()
}

func withParam(url, kv string) string {
	if strings.Contains(url, "?") {
		return url + "&" + kv
	}
	return url + "?" + kv
}
