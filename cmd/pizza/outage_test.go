package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

// behindProxy puts service s's database behind a proxy the test can stop and start, and returns
// the proxy and the environment override that points the service at it.
func (sys *system) behindProxy(t *testing.T, s db.Service) (*outboxtest.Proxy, map[string]string) {
	t.Helper()
	key := strings.ToUpper(string(s)) + "_DATABASE_URL"
	u, err := url.Parse(sys.env[key])
	require.NoError(t, err)
	proxy := outboxtest.NewProxy(t, u.Host)
	return proxy, map[string]string{key: proxy.URL(t, sys.env[key])}
}

// metricValue reads one series' value from a component's /metrics (0 when absent).
func metricValue(t *testing.T, addr string, series *regexp.Regexp) float64 {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics")
	require.Equal(t, http.StatusOK, code)
	m := series.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// The customercenter database goes away for a while as orders keep being placed (the issue's
// scenario: its consumer used to spend its attempts in a second and dead-letter the events, and
// those orders never reached their customer's myPage). Its /readyz says not ready meanwhile, its
// /metrics still answers, its consumer keeps the deliveries, and once the database is back every
// order is on myPage; nothing is dead-lettered.
func TestCustomerCenterDatabaseOutageLosesNoOrder(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, map[string]string{"CONSUMER_MAX_ATTEMPTS": "2"})
	proxy, override := sys.behindProxy(t, db.CustomerCenter)
	sys.startWith(t, override, db.Services...)
	ctx := context.Background()
	_, err := sys.store.Register(ctx, store.RegisterInput{Name: "강남점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)
	placeN := func(n int, from int) []string {
		var ids []string
		for i := range n {
			o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: fmt.Sprint(from + i), Pizza: "불고기피자", Qty: 1, Region: "강남구"})
			require.NoError(t, err)
			require.Equal(t, lifecycle.Ordered, o.Status)
			ids = append(ids, o.ID)
		}
		return ids
	}
	ids := placeN(3, 1)
	for _, id := range ids {
		sys.waitMyPage(t, id, status(lifecycle.Received))
	}

	ccAddr := sys.env["CUSTOMERCENTER_ADDR"]
	queue := "customercenter.events" + sys.env["PIZZA_QUEUE_SUFFIX"]
	retries := regexp.MustCompile(`pizza_consumer_transient_retries_total\{queue="` + regexp.QuoteMeta(queue) + `",reason="unavailable"\} (\S+)`)
	proxy.Stop()
	ids = append(ids, placeN(10, 100)...)
	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+ccAddr+"/readyz")
		return code == http.StatusServiceUnavailable
	},
		20*time.Second, 10*time.Millisecond, "customercenter should not be ready without its database")
	// Each of the consumer's two workers tries again well past CONSUMER_MAX_ATTEMPTS.
	require.Eventually(t, func() bool { return metricValue(t, ccAddr, retries) >= 10 }, 60*time.Second, 20*time.Millisecond,
		"the consumer should keep trying while its database is away")
	require.Zero(t, outboxtest.QueueDepth(t, queue+".dlq"), "nothing dead-lettered during the outage")

	require.NoError(t, proxy.Start())
	for _, id := range ids {
		sys.waitMyPage(t, id, status(lifecycle.Received))
	}
	require.Eventually(t, func() bool { code, _ := get(t, "http://"+ccAddr+"/readyz"); return code == http.StatusOK },
		20*time.Second, 10*time.Millisecond, "customercenter ready again")
	for _, s := range db.Services {
		require.Zero(t, outboxtest.QueueDepth(t, string(s)+".events"+sys.env["PIZZA_QUEUE_SUFFIX"]+".dlq"), "%s's DLQ", s)
	}
}

// placeOrder while the order service's database is away answers the retryable UNAVAILABLE through
// the BFF, not INTERNAL; once it is back, placing works again.
func TestPlaceOrderWhileTheOrderDatabaseIsAwayIsUnavailable(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	proxy, override := sys.behindProxy(t, db.Order)
	sys.startWith(t, override, db.Services...)
	for k, v := range override {
		sys.env[k] = v // the BFF's environment too, as one deployment's would be
	}
	base := sys.startBFF(t)
	registerStore(t, base, "강남점", "강남구")
	tok := mint(t, model.RoleCustomer, "1")
	placed(t, base, tok, "1", "강남구")

	proxy.Stop()
	r := place(t, base, tok, "1", "강남구")
	require.Equal(t, "UNAVAILABLE", r.code(), "errors: %+v", r.Errors)

	require.NoError(t, proxy.Start())
	// A connection the pool held through the outage may fail once more; then placing works.
	require.Eventually(t, func() bool { return place(t, base, tok, "1", "강남구").code() == "" }, 20*time.Second, 10*time.Millisecond)
}
