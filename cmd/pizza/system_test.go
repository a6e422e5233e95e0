package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/delivery"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

// system is the whole backend started through the real `pizza serve` wiring, on free ports,
// against the test's own databases and broker names.
type system struct {
	t       *testing.T // the test newSystem was given
	env     map[string]string
	order   *order.Client
	store   *store.Client
	cc      *httpapi.Client
	deliv   *httpapi.Client
	pools   map[db.Service]*pgxpool.Pool
	running []func()
}

// newSystem gives each service a database of its own, cloned from the migrated template (what
// `pizza migrate` makes: TestMigrateTwiceAndConcurrently checks the command itself), and assigns
// addresses; start runs components.
func newSystem(t *testing.T, extraEnv map[string]string) *system {
	t.Helper()
	env := testEnv(t)
	sys := &system{t: t, env: env, pools: map[db.Service]*pgxpool.Pool{}}
	for s, d := range dbtest.NewDatabases(t, db.Services...) {
		key := strings.ToUpper(string(s))
		env[key+"_DATABASE_URL"], sys.pools[s] = d.URL, d.Pool
		env[key+"_ADDR"] = freeAddr(t)
	}
	maps.Copy(env, extraEnv)
	sys.order = order.NewClient("http://" + env["ORDER_ADDR"])
	sys.store = store.NewClient("http://" + env["STORE_ADDR"])
	sys.cc = httpapi.NewClient("http://" + env["CUSTOMERCENTER_ADDR"])
	sys.deliv = httpapi.NewClient("http://" + env["DELIVERY_ADDR"])
	t.Cleanup(sys.stopAll)
	return sys
}

// wholeSystem starts every service and a BFF (which serves the console), with extra
// configuration, and returns the system and the BFF's base URL.
func wholeSystem(t *testing.T, extra map[string]string) (*system, string) {
	t.Helper()
	sys := newSystem(t, extra)
	sys.start(t, db.Services...)
	return sys, sys.startBFF(t)
}

// start serves the named components in their own `pizza serve` and waits until they are ready.
// The returned function stops them (SIGTERM) and waits.
func (sys *system) start(t *testing.T, components ...db.Service) func() {
	t.Helper()
	return sys.startWith(t, nil, components...)
}

// startWith is start with some variables of the environment replaced: another replica.
func (sys *system) startWith(t *testing.T, override map[string]string, components ...db.Service) func() {
	t.Helper()
	env := maps.Clone(sys.env)
	maps.Copy(env, override)
	args := []string{"serve"}
	for _, c := range components {
		args = append(args, string(c))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env, io.Discard, io.Discard) }()
	for _, c := range components {
		addr := "http://" + env[strings.ToUpper(string(c))+"_ADDR"] + "/readyz"
		require.Eventually(t, func() bool { code, _ := get(t, addr); return code == http.StatusOK },
			20*time.Second, 10*time.Millisecond, "%s never became ready", c)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve %v: %v", components, err)
			}
		})
	}
	sys.running = append(sys.running, stop)
	// Stop everything before what the test set up since newSystem (a proxy to a database or the
	// broker) goes: a service whose database vanishes under it drains slowly (20 s more for
	// TestChaos/PostgresDown). Stopping twice is a no-op. A subtest's components stop when the
	// subtest ends, and only they: the test's own run on.
	if t == sys.t {
		t.Cleanup(sys.stopAll)
	} else {
		t.Cleanup(stop)
	}
	return stop
}

// stopAll stops every component at once (each drains on its own; one at a time, the drains add up).
func (sys *system) stopAll() {
	var wg sync.WaitGroup
	for _, stop := range sys.running {
		wg.Go(stop)
	}
	wg.Wait()
}

func (sys *system) myPage(t *testing.T, orderID string) (customercenter.Row, error) {
	var row customercenter.Row
	err := sys.cc.Do(context.Background(), http.MethodGet, "/mypage/orders/"+orderID, nil, &row)
	return row, err
}

func (sys *system) delivery(orderID string) (delivery.Delivery, error) {
	var d delivery.Delivery
	err := sys.deliv.Do(context.Background(), http.MethodGet, "/deliveries/"+orderID, nil, &d)
	return d, err
}

// waitMyPage waits until the order's myPage row satisfies ok and returns it.
func (sys *system) waitMyPage(t *testing.T, orderID string, ok func(customercenter.Row) bool) customercenter.Row {
	t.Helper()
	var row customercenter.Row
	require.Eventually(t, func() bool {
		var err error
		row, err = sys.myPage(t, orderID)
		return err == nil && ok(row)
	}, 20*time.Second, 5*time.Millisecond, "myPage row of order %s never got there; last: %+v", orderID, row)
	return row
}

func (sys *system) waitOrder(t *testing.T, orderID string, want lifecycle.Status) order.Order {
	t.Helper()
	var o order.Order
	require.Eventually(t, func() bool {
		var err error
		o, err = sys.order.Get(context.Background(), orderID)
		return err == nil && o.Status == want
	}, 20*time.Second, 5*time.Millisecond, "order %s never became %s; last: %+v", orderID, want, o)
	return o
}

// status matches a row in status s whose details (from order.placed or order.rejected, which may
// be applied after later events) have arrived.
func status(s lifecycle.Status) func(customercenter.Row) bool {
	return func(r customercenter.Row) bool { return r.Status == s && r.Pizza != "" }
}

func open(b bool) *bool { return &b }

func requireCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, errs.CodeOf(err), "error: %v", err)
}

// 1. The seed's story, end to end through the services' HTTP APIs.
func TestSeedStoryThroughTheServices(t *testing.T) {
	t.Parallel()
	// The store check goes through a proxy that, for region 마포구, closes the store right after
	// answering "open": the store is closed between the check and the order's arrival.
	var sys *system
	storeURL, _ := storeProxy(t, func() string { return sys.env["STORE_ADDR"] }, func(r *http.Request, answer func()) {
		answer()
		if r.URL.Query().Get("region") == "마포구" {
			stores, err := sys.store.List(context.Background(), "마포구")
			if err == nil && len(stores) == 1 {
				_, err = sys.store.SetOpen(context.Background(), stores[0].ID, false)
			}
			if err != nil {
				t.Errorf("close the store behind the check: %v", err)
			}
		}
	})
	sys = newSystem(t, map[string]string{"STORE_URL": storeURL})
	sys.start(t, db.Services...)
	ctx := context.Background()

	gangnam, err := sys.store.Register(ctx, store.RegisterInput{Name: "강남점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)
	require.True(t, gangnam.Open)

	// Order, received, cooked, delivery started; myPage right at each step.
	o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "1", Pizza: "하와이안피자", Qty: 1, Region: "강남구"})
	require.NoError(t, err)
	require.Equal(t, lifecycle.Ordered, o.Status)
	row := sys.waitMyPage(t, o.ID, status(lifecycle.Received))
	require.Equal(t, gangnam.ID, row.StoreID)
	require.Equal(t, "하와이안피자", row.Pizza)
	require.Equal(t, "1", row.CustomerID)
	require.Equal(t, lifecycle.Received, sys.waitOrder(t, o.ID, lifecycle.Received).Status)
	received, err := sys.store.Orders(ctx, gangnam.ID, lifecycle.Received)
	require.NoError(t, err)
	require.Len(t, received, 1)
	require.Equal(t, o.ID, received[0].OrderID)

	cooked, err := sys.store.MarkCooked(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Cooked, cooked.Status)
	row2 := sys.waitMyPage(t, o.ID, status(lifecycle.DeliveryStarted))
	require.NotEmpty(t, row2.DeliveryID)
	require.Greater(t, row2.Version, row.Version)
	sys.waitOrder(t, o.ID, lifecycle.DeliveryStarted)
	d, err := sys.delivery(o.ID)
	require.NoError(t, err)
	require.Equal(t, delivery.Started, d.Status)
	_, err = sys.order.Cancel(ctx, o.ID)
	requireCode(t, err, errs.Conflict)

	// Cancel before cooking: cancelled everywhere, and the store can no longer cook it.
	o2, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "1", Pizza: "페퍼로니피자", Qty: 2, Region: "강남구"})
	require.NoError(t, err)
	sys.waitMyPage(t, o2.ID, status(lifecycle.Received))
	c, err := sys.order.Cancel(ctx, o2.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Cancelled, c.Status)
	sys.waitMyPage(t, o2.ID, status(lifecycle.Cancelled))
	require.Eventually(t, func() bool {
		so, err := sys.store.Order(ctx, o2.ID)
		return err == nil && so.Status == lifecycle.Cancelled
	}, 10*time.Second, 5*time.Millisecond)
	_, err = sys.store.MarkCooked(ctx, o2.ID)
	requireCode(t, err, errs.Conflict)
	again, err := sys.order.Cancel(ctx, o2.ID)
	require.NoError(t, err, "cancelling twice is harmless")
	require.Equal(t, lifecycle.Cancelled, again.Status)

	// No open store in the region: recorded, rejected.
	o3, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "2", Pizza: "불고기피자", Qty: 1, Region: "종로구"})
	require.NoError(t, err)
	require.Equal(t, lifecycle.Rejected, o3.Status)
	require.Equal(t, lifecycle.NoOpenStore, o3.RejectReason)
	row3 := sys.waitMyPage(t, o3.ID, status(lifecycle.Rejected))
	require.Equal(t, lifecycle.NoOpenStore, row3.RejectReason)

	// The store closes between the check and the order's arrival: the store rejects it.
	_, err = sys.store.Register(ctx, store.RegisterInput{Name: "마포점", Region: "마포구", Open: open(true)})
	require.NoError(t, err)
	o4, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "3", Pizza: "치즈피자", Qty: 3, Region: "마포구"})
	require.NoError(t, err)
	require.Equal(t, lifecycle.Ordered, o4.Status, "the check saw an open store")
	row4 := sys.waitMyPage(t, o4.ID, status(lifecycle.Rejected))
	require.Equal(t, lifecycle.NoOpenStore, row4.RejectReason)
	got := sys.waitOrder(t, o4.ID, lifecycle.Rejected)
	require.Equal(t, lifecycle.NoOpenStore, got.RejectReason)

	// Idempotency: the same key for the same customer is the same order.
	k1, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "4", Pizza: "콤비네이션", Qty: 1, Region: "강남구", IdempotencyKey: "k-1"})
	require.NoError(t, err)
	k2, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "4", Pizza: "콤비네이션", Qty: 1, Region: "강남구", IdempotencyKey: "k-1"})
	require.NoError(t, err)
	require.Equal(t, k1.ID, k2.ID)
	other, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "5", Pizza: "콤비네이션", Qty: 1, Region: "강남구", IdempotencyKey: "k-1"})
	require.NoError(t, err)
	require.NotEqual(t, k1.ID, other.ID, "keys belong to their customer")

	// myPage lists a customer's orders, newest first.
	sys.waitMyPage(t, o2.ID, status(lifecycle.Cancelled))
	var rows []customercenter.Row
	require.NoError(t, sys.cc.Do(ctx, http.MethodGet, "/mypage?customerId=1&limit=10", nil, &rows))
	require.Len(t, rows, 2)
	require.Equal(t, []string{o2.ID, o.ID}, []string{rows[0].OrderID, rows[1].OrderID})
}

// storeProxy puts a reverse proxy in front of the store service for the order service's
// availability checks. intercept gets each /availability request and a function that forwards
// it; other paths pass straight through. It returns the proxy's URL and a count of checks that
// reached the store, by region.
func storeProxy(t *testing.T, target func() string, intercept func(r *http.Request, answer func())) (string, *regionCounter) {
	counts := &regionCounter{n: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := url.Parse("http://" + target())
		rp := httputil.NewSingleHostReverseProxy(u)
		if r.URL.Path != "/availability" {
			rp.ServeHTTP(w, r)
			return
		}
		counts.add(r.URL.Query().Get("region"))
		rec := httptest.NewRecorder()
		intercept(r, func() { rp.ServeHTTP(rec, r) })
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv.URL, counts
}

type regionCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *regionCounter) add(region string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[region]++
}

func (c *regionCounter) get(region string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[region]
}

func breakerState(t *testing.T, sys *system) string {
	_, body := get(t, "http://"+sys.env["ORDER_ADDR"]+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, `pizza_breaker_state{breaker="store-availability"}`) {
			return strings.Fields(line)[1]
		}
	}
	return ""
}

// 3. The breaker, as in the seed's 종로구 scenario: a slow store check times out into STORE_BUSY;
// after the trip threshold the store gets no calls while the breaker is open; after the open
// interval one probe passes and its success closes the breaker.
func TestBreakerOnSlowStoreCheck(t *testing.T) {
	t.Parallel()
	var (
		sys  *system
		slow sync.Map // region -> true while its check hangs
	)
	abandoned := make(chan struct{}, 64) // a hanging check that its caller (the order service) gave up
	storeURL, calls := storeProxy(t, func() string { return sys.env["STORE_ADDR"] }, func(r *http.Request, answer func()) {
		if _, ok := slow.Load(r.URL.Query().Get("region")); ok {
			select { // far longer than the check timeout; ends when the caller gives up
			case <-r.Context().Done():
				abandoned <- struct{}{}
			case <-time.After(10 * time.Second):
			}
			return
		}
		answer()
	})
	sys = newSystem(t, map[string]string{
		"STORE_URL":           storeURL,
		"STORE_CHECK_TIMEOUT": "1s", // generous: a loaded CI machine must not time out healthy checks
		"BREAKER_TRIP_AFTER":  "3",
		"BREAKER_OPEN_FOR":    "1s",
	})
	sys.start(t, db.Order, db.Store)
	ctx := context.Background()
	for _, region := range []string{"종로구", "강남구"} {
		_, err := sys.store.Register(ctx, store.RegisterInput{Name: region + "점", Region: region, Open: open(true)})
		require.NoError(t, err)
	}
	slow.Store("종로구", true)
	place := func(region string) order.Order {
		o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "1", Pizza: "페퍼로니피자", Qty: 1, Region: region})
		require.NoError(t, err)
		return o
	}

	// Callers who give up are no evidence against the store: five cancelled requests (more than
	// the trip threshold) leave the breaker closed, and record nothing.
	// Each caller gives up once its check has reached the store (a fixed deadline could expire
	// before that on a loaded machine, and then prove nothing).
	for i := range 5 {
		cctx, cancel := context.WithCancel(ctx)
		placed := make(chan error, 1)
		go func() {
			_, err := sys.order.Place(cctx, order.PlaceInput{CustomerID: "1", Pizza: "페퍼로니피자", Qty: 1, Region: "종로구"})
			placed <- err
		}()
		require.Eventually(t, func() bool { return calls.get("종로구") == i+1 }, 10*time.Second, 5*time.Millisecond)
		cancel()
		require.ErrorIs(t, <-placed, context.Canceled)
		select { // the order service let the check go: the next caller asks afresh
		case <-abandoned:
		case <-time.After(10 * time.Second):
			t.Fatal("the order service kept waiting on a check nobody wanted")
		}
	}
	require.Equal(t, "0", breakerState(t, sys))
	var recorded int
	require.NoError(t, sys.pools[db.Order].QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&recorded))
	require.Zero(t, recorded, "an order whose caller went away before the check answered is not recorded")

	for range 3 {
		start := time.Now()
		o := place("종로구")
		require.Less(t, time.Since(start), 5*time.Second, "the check timeout, not the hanging store, ends the call")
		require.Equal(t, lifecycle.Rejected, o.Status)
		require.Equal(t, lifecycle.StoreBusy, o.RejectReason)
		require.GreaterOrEqual(t, o.RetryAfterSeconds, 1)
	}
	require.Equal(t, 8, calls.get("종로구"))
	require.Equal(t, "2", breakerState(t, sys), "three consecutive failures opened the breaker")

	// Open: every region is refused at once, and the store hears nothing.
	for _, region := range []string{"종로구", "강남구", "종로구"} {
		o := place(region)
		require.Equal(t, lifecycle.StoreBusy, o.RejectReason)
		require.Equal(t, 1, o.RetryAfterSeconds, "the breaker half-opens within the second")
	}
	require.Equal(t, 8, calls.get("종로구"))
	require.Zero(t, calls.get("강남구"))

	// After the open interval the breaker lets one probe through; the store is healthy again.
	slow.Delete("종로구")
	require.Eventually(t, func() bool { return breakerState(t, sys) == "1" }, 5*time.Second, 10*time.Millisecond)
	o := place("종로구")
	require.Equal(t, lifecycle.Ordered, o.Status)
	require.Equal(t, 9, calls.get("종로구"))
	require.Equal(t, "0", breakerState(t, sys), "the probe's success closed the breaker")
	require.Equal(t, lifecycle.Ordered, place("강남구").Status)
}

// 4. Fault isolation: with delivery and customercenter stopped, 200 orders are accepted and
// cooked without error; when they start, every order reaches its final state and every myPage
// row is right: nothing lost, nothing twice.
func TestOrdersFlowWhileDeliveryAndCustomerCenterAreDown(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	sys.start(t, db.Order, db.Store)
	ctx := context.Background()
	_, err := sys.store.Register(ctx, store.RegisterInput{Name: "강남점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)
	_, err = sys.store.Register(ctx, store.RegisterInput{Name: "역삼점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)

	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: fmt.Sprint(i % 10), Pizza: "고구마피자", Qty: 1 + i%3, Region: "강남구"})
			errs[i] = err
			if err == nil && o.Status != lifecycle.Ordered {
				errs[i] = fmt.Errorf("order %d is %s", i, o.Status)
			}
			ids[i] = o.ID
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	for _, id := range ids {
		sys.waitOrder(t, id, lifecycle.Received)
	}
	for _, id := range ids {
		_, err := sys.store.MarkCooked(ctx, id)
		require.NoError(t, err)
	}
	for _, id := range ids {
		sys.waitOrder(t, id, lifecycle.Cooked)
	}

	sys.start(t, db.Delivery, db.CustomerCenter)
	for _, id := range ids {
		row := sys.waitMyPage(t, id, status(lifecycle.DeliveryStarted))
		require.NotEmpty(t, row.StoreID)
		require.NotEmpty(t, row.DeliveryID)
		require.Equal(t, "고구마피자", row.Pizza)
		sys.waitOrder(t, id, lifecycle.DeliveryStarted)
	}
	count := func(s db.Service, q string) int {
		var c int
		require.NoError(t, sys.pools[s].QueryRow(ctx, q).Scan(&c))
		return c
	}
	require.Equal(t, n, count(db.CustomerCenter, `SELECT count(*) FROM mypage`))
	require.Equal(t, n, count(db.Delivery, `SELECT count(*) FROM deliveries WHERE status = 'STARTED'`))
	require.Equal(t, n, count(db.Delivery, `SELECT count(*) FROM outbox_events WHERE type = 'delivery.started'`),
		"one delivery.started per order")
	require.Equal(t, 0, count(db.Store, `SELECT sum(unfinished) FROM stores`), "every received order was cooked")
}
