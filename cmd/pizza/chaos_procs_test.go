package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
)

// The fault suite's scenarios that need real OS processes: kill -9, and restarts one replica at
// a time. Each component replica is a `pizza serve` process: the test binary, run as the command.

// asPizza, in the environment of a process started from the test binary, makes that process the
// pizza command itself (TestMain calls main): each replica runs this tree's code without a
// separate `go build`.
const asPizza = "RUN_AS_PIZZA_COMMAND"

// pizzaCommand is `pizza args...` as a process of the test binary (see asPizza).
func pizzaCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{asPizza + "=1"}
	return cmd
}

// proc is one running `pizza serve` process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc runs `pizza serve components...` with env and waits until readyURL answers 200.
func startProc(t *testing.T, env map[string]string, readyURL string, components ...string) *proc {
	t.Helper()
	cmd := pizzaCommand(t, append([]string{"serve"}, components...)...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"), "HOME="+os.Getenv("HOME"))
	logs, err := os.CreateTemp("", "pizza-chaos-"+strings.Join(components, "-")+"-*.log")
	require.NoError(t, err)
	// The process's log is kept for a failed test (its messages name it) and removed otherwise;
	// registered first, so it runs after the process is killed below.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %v kept: %s", components, logs.Name())
		} else {
			_ = os.Remove(logs.Name())
		}
	})
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logs.Close(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	require.Eventually(t, func() bool {
		select {
		case <-p.done:
			return false
		default:
		}
		resp, err := http.Get(readyURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "%v never became ready (logs: %s)", components, logs.Name())
	return p
}

// signal sends sig and waits for the process to end.
func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	<-p.done
}

// balancer is what stands in front of the BFF replicas in a deployment (a Kubernetes Service, a
// load balancer): it spreads requests over the replicas and sends a request elsewhere when a
// replica refuses the connection, which is safe because nothing was sent.
type balancer struct {
	mu       sync.Mutex
	backends []string // host:port
	next     atomic.Uint64
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	backends := b.backends
	b.mu.Unlock()
	start := int(b.next.Add(1))
	for i := range backends {
		out := r.Clone(r.Context())
		out.RequestURI, out.Host = "", ""
		out.URL.Scheme, out.URL.Host = "http", backends[(start+i)%len(backends)]
		out.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := balancerTransport.RoundTrip(out)
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			continue // refused: nothing was sent, so another replica may take it
		}
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		_ = resp.Body.Close()
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

// balancerTransport dials for every request, as the dial is what tells a replica that is gone.
var balancerTransport = &http.Transport{DisableKeepAlives: true}

// procTopology runs the system split into processes: replicas of every service component and of
// the BFF, callers listing every replica's URL.
type procTopology struct {
	sys      *system
	mu       sync.Mutex
	procs    map[string]*proc // by replica name, such as "order#1"
	env      map[string]map[string]string
	ready    map[string]string
	comps    map[string][]string
	balancer *balancer
}

// newProcTopology starts replicas of each service and of the BFF behind a balancer, and returns
// the balancer's base URL.
func newProcTopology(t *testing.T, sys *system, replicas int) (*procTopology, string) {
	pt := &procTopology{sys: sys, procs: map[string]*proc{}, env: map[string]map[string]string{},
		ready: map[string]string{}, comps: map[string][]string{}, balancer: &balancer{}}
	// Every process keeps few connections: ten of them share PostgreSQL with the other tests.
	sys.env["PIZZA_DB_MAX_CONNS"] = "2"
	addrs := map[db.Service][]string{}
	for _, s := range db.Services {
		key := strings.ToUpper(string(s))
		addrs[s] = []string{sys.env[key+"_ADDR"]}
		for range replicas - 1 {
			addrs[s] = append(addrs[s], freeAddr(t))
		}
		var urls []string
		for _, a := range addrs[s] {
			urls = append(urls, "http://"+a)
		}
		sys.env[key+"_URL"] = strings.Join(urls, ",")
	}
	for _, s := range db.Services {
		for i, a := range addrs[s] {
			name := fmt.Sprintf("%s#%d", s, i+1)
			env := maps.Clone(sys.env)
			env[strings.ToUpper(string(s))+"_ADDR"] = a
			pt.env[name], pt.ready[name], pt.comps[name] = env, "http://"+a+"/readyz", []string{string(s)}
		}
	}
	for i := range replicas {
		name := fmt.Sprintf("bff#%d", i+1)
		env := maps.Clone(sys.env)
		env["PIZZA_HTTP_ADDR"] = freeAddr(t)
		pt.env[name], pt.ready[name], pt.comps[name] = env, "http://"+env["PIZZA_HTTP_ADDR"]+"/readyz", []string{"bff"}
		pt.balancer.backends = append(pt.balancer.backends, env["PIZZA_HTTP_ADDR"])
	}
	for name := range pt.env {
		pt.start(t, name)
	}
	srv := &http.Server{Handler: pt.balancer}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return pt, "http://" + ln.Addr().String()
}

func (pt *procTopology) start(t *testing.T, name string) {
	p := startProc(t, pt.env[name], pt.ready[name], pt.comps[name]...)
	pt.mu.Lock()
	pt.procs[name] = p
	pt.mu.Unlock()
}

// restart stops one replica gracefully (SIGTERM: it drains) and starts it again. A BFF replica
// leaves the balancer first, as a pod leaves its Service's endpoints before it is signalled.
func (pt *procTopology) restart(t *testing.T, name string) {
	pt.mu.Lock()
	p := pt.procs[name]
	pt.mu.Unlock()
	addr := pt.env[name]["PIZZA_HTTP_ADDR"]
	if pt.comps[name][0] == "bff" {
		pt.balancer.remove(addr)
		// As a pod's preStop pause: requests already routed to it reach it before it stops
		// listening (it drains what it has).
		time.Sleep(200 * time.Millisecond)
	}
	p.signal(syscall.SIGTERM)
	pt.start(t, name)
	if pt.comps[name][0] == "bff" {
		pt.balancer.add(addr)
	}
}

func (b *balancer) remove(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = slices.DeleteFunc(slices.Clone(b.backends), func(a string) bool { return a == addr })
}

func (b *balancer) add(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(slices.Clone(b.backends), addr)
}

// kill ends one replica with SIGKILL: no drain, no goodbye.
func (pt *procTopology) kill(name string) {
	pt.mu.Lock()
	p := pt.procs[name]
	pt.mu.Unlock()
	p.signal(syscall.SIGKILL)
}

// names are the topology's replicas, sorted.
func (pt *procTopology) names() []string {
	return slices.Sorted(maps.Keys(pt.env))
}
