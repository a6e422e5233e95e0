package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// syncBuffer is a bytes.Buffer a server writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveInBackground runs `pizza serve args...` until the test stops it (the returned function,
// which checks it ended cleanly).
func serveInBackground(t *testing.T, env map[string]string, stdout io.Writer, args ...string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), env, stdout, io.Discard) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func storesIn(t *testing.T, dbURL string) []string {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	rows, err := pool.Query(context.Background(), `SELECT name || ' ' || region || ' ' || open FROM stores ORDER BY id`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// `pizza serve` in development says where everything is, with a token per role, once every
// component is ready, and not before: here RabbitMQ is away at first (behind a stopped proxy),
// so no component is ready, and nothing is printed until it comes back. On its first run on an
// empty store database it registers the development stores, and says so. The BFF's metrics and
// profiles are on its ops address, not on its public one.
func TestServeAnnouncesOnceReady(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	require.NoError(t, run(context.Background(), []string{"migrate"}, env, io.Discard, io.Discard))
	broker, err := url.Parse(env["AMQP_URL"])
	require.NoError(t, err)
	proxy := outboxtest.NewProxy(t, broker.Host)
	env["AMQP_URL"] = proxy.URL(t, env["AMQP_URL"])
	proxy.Stop()
	env["PIZZA_SEED"] = "true"
	env["PIZZA_OPS_ADDR"] = freeAddr(t)
	env["PIZZA_PPROF"] = "true"
	ready := []string{"http://" + env["PIZZA_HTTP_ADDR"] + "/readyz"}
	for _, s := range db.Services {
		addr := freeAddr(t)
		env[strings.ToUpper(string(s))+"_ADDR"] = addr
		ready = append(ready, "http://"+addr+"/readyz")
	}
	var out syncBuffer
	stop := serveInBackground(t, env, &out)

	for _, u := range ready {
		require.Eventually(t, func() bool { c, _ := get(t, strings.TrimSuffix(u, "/readyz")+"/healthz"); return c == http.StatusOK },
			20*time.Second, 10*time.Millisecond, "%s never served", u)
		code, _ := get(t, u)
		require.Equal(t, http.StatusServiceUnavailable, code, "%s is not ready without RabbitMQ", u)
	}
	require.Empty(t, out.String(), "nothing is announced before every component is ready")

	require.NoError(t, proxy.Start())
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Stop with Ctrl-C.") },
		60*time.Second, 20*time.Millisecond, "the summary never came: %q", out.String())
	for _, u := range ready {
		code, body := get(t, u)
		require.Equal(t, http.StatusOK, code, "%s: announced before ready: %s", u, body)
	}
	summary := out.String()
	require.True(t, strings.HasSuffix(summary, "Stop with Ctrl-C.\n"), "how to stop is the last line: %q", summary)
	base := "http://" + env["PIZZA_HTTP_ADDR"] + "/"
	require.Regexp(t, `Console +`+regexp.QuoteMeta(base)+` `, summary)
	require.Contains(t, summary, "GraphiQL  "+base+"playground\n")
	require.Contains(t, summary, base+"graphql")
	require.Contains(t, summary, "http://"+env["PIZZA_OPS_ADDR"]+"/metrics")

	// The development stores, registered once, and said so.
	require.Equal(t, []string{"강남점 강남구 true", "종로점 종로구 false"}, storesIn(t, env["STORE_DATABASE_URL"]))
	require.Regexp(t, `store 1 +강남점 +강남구 +open\n`, summary)
	require.Regexp(t, `store 2 +종로점 +종로구 +closed`, summary)

	// One token per role, each valid for its role, the master's for the open store.
	auth, err := graph.NewAuth(developmentSecret)
	require.NoError(t, err)
	for label, want := range map[string]graph.Claims{
		"customer 1":        {Role: model.RoleCustomer, CustomerID: "1"},
		"agent":             {Role: model.RoleAgent},
		"master of store 1": {Role: model.RoleMaster, StoreID: "1"},
		"admin":             {Role: model.RoleAdmin},
	} {
		m := regexp.MustCompile(`(?m)^  ` + label + ` +(\S+)$`).FindStringSubmatch(summary)
		require.NotNil(t, m, "a token for %s in %q", label, summary)
		c, err := auth.Verify(m[1])
		require.NoError(t, err, label)
		require.Equal(t, want.Role, c.Role, label)
		require.Equal(t, want.CustomerID, c.CustomerID, label)
		require.Equal(t, want.StoreID, c.StoreID, label)
	}

	// Metrics and profiles: on the ops address, not on the public port (where "/" is the
	// console, which must not answer for them either).
	pub, ops := "http://"+env["PIZZA_HTTP_ADDR"], "http://"+env["PIZZA_OPS_ADDR"]
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		code, body := get(t, pub+path)
		require.Equal(t, http.StatusNotFound, code, "%s on the public port: %.200s", path, body)
		code, _ = get(t, ops+path)
		require.Equal(t, http.StatusOK, code, "%s on the ops address", path)
	}
	_, metrics := get(t, ops+"/metrics")
	require.Contains(t, metrics, "pizza_bff_subscribers 0")
	for _, path := range []string{"/healthz", "/readyz"} {
		code, _ := get(t, pub+path)
		require.Equal(t, http.StatusOK, code, "%s stays on the public port (load balancers, Kubernetes)", path)
	}
	stop()

	// Served again on the same databases, the stores are not registered a second time.
	var again syncBuffer
	stop = serveInBackground(t, env, &again)
	require.Eventually(t, func() bool { return strings.Contains(again.String(), "Stop with Ctrl-C.") },
		60*time.Second, 20*time.Millisecond)
	require.NotContains(t, again.String(), "Registered")
	require.Regexp(t, `(?m)^  master of store 1 `, again.String())
	require.Len(t, storesIn(t, env["STORE_DATABASE_URL"]), 2)
	stop()
}

// Production never registers example stores, and prints no summary.
func TestProductionDoesNotSeed(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	require.NoError(t, run(context.Background(), []string{"migrate", "store"}, env, io.Discard, io.Discard))
	delete(env, "PIZZA_SEED") // its default is on
	env["PIZZA_ENV"] = "production"
	env["STORE_ADDR"] = freeAddr(t)
	var out syncBuffer
	stop := serveInBackground(t, env, &out, "store")
	require.Eventually(t, func() bool { c, _ := get(t, "http://"+env["STORE_ADDR"]+"/readyz"); return c == http.StatusOK },
		30*time.Second, 10*time.Millisecond)
	stop()
	require.Empty(t, storesIn(t, env["STORE_DATABASE_URL"]))
	require.Empty(t, out.String())

	// In development the same start registers them.
	env["PIZZA_ENV"] = "development"
	stop = serveInBackground(t, env, &out, "store")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Registered two stores") },
		30*time.Second, 10*time.Millisecond, "development says it registered them, once ready")
	stop()
	require.Len(t, storesIn(t, env["STORE_DATABASE_URL"]), 2)
	require.NotContains(t, out.String(), "Tokens", "no BFF here: no tokens")
}

// With the public development secret, the BFF refuses to listen anywhere but loopback, and says
// how to set a secret; with a secret of its own it listens where it is told.
func TestDevelopmentSecretStaysOnLoopback(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	_, port, err := net.SplitHostPort(env["PIZZA_HTTP_ADDR"])
	require.NoError(t, err)
	for _, secret := range []string{"", developmentSecret} {
		for _, addr := range []string{":" + port, "0.0.0.0:" + port, "[::]:" + port} {
			env["PIZZA_HTTP_ADDR"], env["PIZZA_AUTH_SECRET"] = addr, secret
			var errOut bytes.Buffer
			// Refused at once; should it serve instead, it stops (without error) when ctx ends.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := run(ctx, []string{"serve", "bff"}, env, io.Discard, &errOut)
			cancel()
			require.ErrorContains(t, err, "PIZZA_HTTP_ADDR="+addr+" listens beyond this machine", "secret %q", secret)
			require.ErrorContains(t, err, "PIZZA_AUTH_SECRET")
			require.ErrorContains(t, err, "openssl rand -base64 32")
			require.Equal(t, 1, exitCode(err, &errOut))
			code, _ := get(t, "http://127.0.0.1:"+port+"/healthz")
			require.Zero(t, code, "nothing listened")
		}
	}
	env["PIZZA_HTTP_ADDR"], env["PIZZA_AUTH_SECRET"] = "0.0.0.0:"+port, "a development secret of my own"
	stop := serveInBackground(t, env, io.Discard, "bff")
	require.Eventually(t, func() bool { c, _ := get(t, "http://127.0.0.1:"+port+"/healthz"); return c == http.StatusOK },
		20*time.Second, 10*time.Millisecond)
	stop()
}
