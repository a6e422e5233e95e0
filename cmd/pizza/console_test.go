package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
)

// What the console's agent and admin screens ask, through the real system: the customer search
// and the system page.

const customersQuery = `query($s: String, $n: Int) { customers(search: $s, limit: $n) { id orders lastOrderAt } }`

type gqlCustomer struct {
	ID          string
	Orders      int
	LastOrderAt *time.Time
}

// An agent finds customers by the start of their id, most recently active first; only agents and
// admins may; a limit out of 1..100, or a search no id could start with, is BAD_USER_INPUT.
func TestCustomerSearchThroughGraphQL(t *testing.T) {
	t.Parallel()
	sys, base := wholeSystem(t, nil)
	registerStore(t, base, "강남점", "강남구")
	agent := mint(t, model.RoleAgent, "")
	var ids []string
	for _, c := range []string{"10", "1", "2", "1", "고객 7"} {
		ids = append(ids, placed(t, base, agent, c, "강남구").ID)
	}
	for _, id := range ids {
		sys.waitMyPage(t, id, status(lifecycle.Received))
	}
	// Customer 10's order changes last: 10 is the most recently active.
	gql(t, base, agent, cancelMutation, map[string]any{"id": ids[0]}).decode(t, "cancelOrder", new(struct{}))
	sys.waitMyPage(t, ids[0], status(lifecycle.Cancelled))
	find := func(tok string, vars map[string]any) []gqlCustomer {
		t.Helper()
		var out []gqlCustomer
		gql(t, base, tok, customersQuery, vars).decode(t, "customers", &out)
		return out
	}
	all := find(agent, nil)
	require.Len(t, all, 4)
	require.Equal(t, "10", all[0].ID)
	orders := map[string]int{}
	for i, c := range all {
		orders[c.ID] = c.Orders
		require.NotNil(t, c.LastOrderAt)
		if i > 0 {
			require.False(t, c.LastOrderAt.After(*all[i-1].LastOrderAt), "most recently active first: %+v", all)
		}
	}
	require.Equal(t, map[string]int{"10": 1, "1": 2, "2": 1, "고객 7": 1}, orders)
	ids = nil
	for _, c := range find(mint(t, model.RoleAdmin, ""), map[string]any{"s": "1"}) {
		ids = append(ids, c.ID)
	}
	require.Equal(t, []string{"10", "1"}, ids)
	require.Len(t, find(agent, map[string]any{"s": "", "n": 1}), 1, "an empty search is everyone")
	require.Empty(t, find(agent, map[string]any{"s": "1 "}), "as typed")

	for _, tok := range []string{mint(t, model.RoleCustomer, "1"), mint(t, model.RoleMaster, "1")} {
		require.Equal(t, "FORBIDDEN", gql(t, base, tok, customersQuery, nil).code())
	}
	for _, bad := range []struct {
		vars  map[string]any
		field string
	}{
		{map[string]any{"n": 0}, "limit"}, {map[string]any{"n": 101}, "limit"},
		{map[string]any{"s": strings.Repeat("1", 65)}, "search"}, {map[string]any{"s": "1\u0000"}, "search"},
	} {
		resp := gql(t, base, agent, customersQuery, bad.vars)
		require.Equal(t, "BAD_USER_INPUT", resp.code(), "%v", bad.vars)
		require.Equal(t, bad.field, resp.Errors[0].Extensions.Field, "%v", bad.vars)
	}
}

const systemStatusQuery = `{ systemStatus { at services { name ready error outboxBacklog outboxOldestSeconds consumerQueued
	consumerLagSeconds deadLetters breakers { name state } } } }`

type gqlServiceStatus struct {
	Name                string
	Ready               bool
	Error               *string
	OutboxBacklog       int
	OutboxOldestSeconds *float64
	ConsumerQueued      int
	ConsumerLagSeconds  *float64
	DeadLetters         int
	Breakers            []struct{ Name, State string }
}

func systemStatus(t *testing.T, base string) map[string]gqlServiceStatus {
	t.Helper()
	var out struct {
		At       time.Time
		Services []gqlServiceStatus
	}
	gql(t, base, mint(t, model.RoleAdmin, ""), systemStatusQuery, nil).decode(t, "systemStatus", &out)
	require.WithinDuration(t, time.Now(), out.At, time.Minute)
	byName := map[string]gqlServiceStatus{}
	var names []string
	for _, s := range out.Services {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	require.Equal(t, []string{"order", "store", "delivery", "customercenter"}, names)
	return byName
}

// The admin's system page: each service's outbox backlog and its oldest event's age, its
// consumer's queue and lag, its parked dead letters and its breakers. A service that is down, or
// does not answer within a second, is ready=false with the reason beside the others; a breaker
// that tripped shows OPEN. Only admins may ask.
func TestSystemStatus(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, map[string]string{"BREAKER_TRIP_AFTER": "1", "BREAKER_OPEN_FOR": "10m", "STORE_CHECK_TIMEOUT": "5s"}) // the trip below is a refused connection, at once: a slow check on a busy machine must not trip it first
	sys.start(t, db.Order, db.CustomerCenter)
	stopStore := sys.start(t, db.Store)
	stopDelivery := sys.start(t, db.Delivery)
	base := sys.startBFF(t)
	registerStore(t, base, "강남점", "강남구")
	o := placed(t, base, mint(t, model.RoleCustomer, "1"), "1", "강남구")
	sys.waitMyPage(t, o.ID, status(lifecycle.Received))
	ctx := context.Background()
	// A dead letter parked in the store's database, and in the order service's outbox a relay job
	// of two events written a minute ago and not due for an hour: a backlog that stays.
	_, err := sys.pools[db.Store].Exec(ctx, `INSERT INTO outbox_dead_letters (dedupe_key, reason, body) VALUES ('k', 'malformed', '{')`)
	require.NoError(t, err)
	_, err = sys.pools[db.Order].Exec(ctx, `
INSERT INTO river_job (args, kind, queue, state, scheduled_at, created_at)
VALUES ($1, 'outbox_relay', 'outbox', 'scheduled', now() + interval '1 hour', now() - interval '1 minute')`,
		fmt.Sprintf(`{"events": [{"eventId": "%s", "type": "test.held", "orderId": "%s"}, {"eventId": "%s", "type": "test.held", "orderId": "%s"}], "orderIds": ["%s"]}`,
			"6a0d0f2e-9a0e-4c55-9f55-5b1d2f3e4a01", o.ID, "6a0d0f2e-9a0e-4c55-9f55-5b1d2f3e4a02", o.ID, o.ID))
	require.NoError(t, err)

	var st map[string]gqlServiceStatus
	require.Eventually(t, func() bool { // the order's own events confirmed: only the held ones are left
		st = systemStatus(t, base)
		return st["order"].OutboxBacklog == 2
	}, 20*time.Second, 20*time.Millisecond, "%+v", st)
	for name, s := range st {
		require.True(t, s.Ready, "%s: %+v", name, s)
		require.Nil(t, s.Error, name)
		require.GreaterOrEqual(t, s.ConsumerQueued, 0, name)
	}
	require.GreaterOrEqual(t, *st["order"].OutboxOldestSeconds, 60.0, "the oldest waits since a minute ago")
	require.Equal(t, 1, st["store"].DeadLetters)
	require.Zero(t, st["order"].DeadLetters)
	for _, name := range []string{"order", "customercenter"} { // both applied store.order_received
		require.NotNil(t, st[name].ConsumerLagSeconds, name)
		require.GreaterOrEqual(t, *st[name].ConsumerLagSeconds, 0.0, name)
	}
	require.Equal(t, []struct{ Name, State string }{{"store-availability", "CLOSED"}, {"store-cancel", "CLOSED"}}, st["order"].Breakers)
	require.Empty(t, st["store"].Breakers)

	// The delivery service stops: it is not ready, with why; the others are shown as before.
	stopDelivery()
	st = systemStatus(t, base)
	require.False(t, st["delivery"].Ready)
	require.NotEmpty(t, *st["delivery"].Error)
	require.True(t, st["order"].Ready)

	// One that does not answer at all (a hung replica) costs its second, not the page.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = hung.Close() })
	hungBFF := sys.startBFFWith(t, map[string]string{"CUSTOMERCENTER_URL": "http://" + hung.Addr().String()})
	st = systemStatus(t, hungBFF)
	require.False(t, st["customercenter"].Ready)
	require.Equal(t, "did not answer within 1s", *st["customercenter"].Error)
	require.True(t, st["store"].Ready)

	// The store stops; the first check that fails trips the order service's breaker.
	stopStore()
	rejected := placed(t, base, mint(t, model.RoleAgent, ""), "1", "강남구")
	require.Equal(t, "STORE_BUSY", *rejected.RejectReason)
	st = systemStatus(t, base)
	require.False(t, st["store"].Ready)
	require.Equal(t, []struct{ Name, State string }{{"store-availability", "OPEN"}, {"store-cancel", "CLOSED"}}, st["order"].Breakers)

	for _, tok := range []string{mint(t, model.RoleCustomer, "1"), mint(t, model.RoleAgent, ""), mint(t, model.RoleMaster, "1")} {
		require.Equal(t, "FORBIDDEN", gql(t, base, tok, systemStatusQuery, nil).code())
	}
}

// postDevToken asks the BFF at base for a development token.
func postDevToken(t *testing.T, base, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(base+"/dev/token", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// The console's one-click sign-in: in development POST /dev/token signs a token the API takes;
// in production nothing answers there, for any method.
func TestDevSignInOnlyInDevelopment(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, nil)
	sys.start(t, db.Store)
	base := sys.startBFF(t)
	code, body := postDevToken(t, base, `{"role": "MASTER", "id": "1"}`)
	require.Equal(t, http.StatusOK, code, body)
	var tok struct{ Token, Role, ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &tok))
	require.Equal(t, []string{"MASTER", "1"}, []string{tok.Role, tok.ID})
	var stores []struct{ ID string }
	gql(t, base, tok.Token, `{ stores { id } }`, nil).decode(t, "stores", &stores)
	require.Equal(t, "NOT_FOUND", gql(t, base, tok.Token, `{ storeOrders(storeId: "1") { id } }`, nil).code(),
		"a master of store 1, which does not exist: its token works, and names that store")
	code, body = postDevToken(t, base, `{"role": "MASTER", "id": "one"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `"code":"BAD_USER_INPUT"`)
	code, _ = get(t, base+"/dev/token")
	require.Equal(t, http.StatusMethodNotAllowed, code)

	const secret = "a production secret of 32 bytes!"
	prod := sys.startBFFWith(t, map[string]string{"PIZZA_ENV": "production", "PIZZA_AUTH_SECRET": secret})
	code, body = postDevToken(t, prod, `{"role": "ADMIN"}`)
	require.Equal(t, http.StatusNotFound, code, body)
	require.NotContains(t, body, "token")
	for _, path := range []string{"/dev/token", "/dev/", "/dev/anything"} {
		code, _ = get(t, prod+path)
		require.Equal(t, http.StatusNotFound, code, path)
	}
}
