// Package bench measures the whole system against the machine's own limit, as `pizza bench`
// (make bench) runs it: the system brought up in this process on its own databases and queues,
// placeOrder driven through the real GraphQL endpoint (closed loop, or open loop at a rate), and
// compared with a hand-written pgx baseline of the bare SQL the accept path needs, at the same
// concurrency. It also measures idle myPage subscribers on one BFF in its own process.
//
// The program that runs the system (cmd/pizza) lays it out and hands it over as a Target; this
// package knows the system only through its public surfaces (GraphQL, /readyz, /metrics, the
// databases' tables and RabbitMQ's queues).
package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/1588-pizza/pizza/db"
)

// Settings are pizza bench's flags.
type Settings struct {
	Duration    time.Duration // how long each phase runs
	Clients     int           // concurrent closed-loop clients (or open-loop workers)
	Regions     int           // regions, with two open stores each
	Rate        int           // open loop: orders per second to offer (0: closed loop)
	Record      string        // append the result to this markdown file (BENCHMARKS.md)
	Subscribers int           // the idle-subscriber measurement instead, with this many
	CPUProfile  string
	MemProfile  string
}

// Target is what the bench needs from the program that runs the system.
type Target struct {
	AMQPURL    string
	AuthSecret string // the key tokens are signed with
	// BFFCommand runs one BFF in its own process, configured by its PIZZA_* environment
	// (`pizza serve bff`): the subscriber measurement.
	BFFCommand []string
	// Prepare lays the whole system out on the bench's own databases (emptied and migrated),
	// exchange, queues (emptied) and free ports: the whole-system measurement.
	Prepare func(ctx context.Context) (System, error)
}

// System is the whole system laid out for one run.
type System struct {
	BFFAddr  string // host:port of the GraphQL endpoint
	Services []Service
	// Serve runs every component until ctx ends.
	Serve func(ctx context.Context) error
}

// Service is one service as the bench watches it.
type Service struct {
	Name        db.Service
	Addr        string // host:port of its API (its /readyz)
	DatabaseURL string
	Queue       string // its RabbitMQ queue
}

func (s System) database(name db.Service) string {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc.DatabaseURL
		}
	}
	return ""
}

// Run measures what s asks for and prints the result to stdout (and appends it to s.Record).
func Run(ctx context.Context, t Target, s Settings, stdout io.Writer) error {
	if s.Subscribers > 0 {
		report, err := runSubscribers(ctx, t, s.Subscribers, s.CPUProfile, s.MemProfile, stdout)
		if err == nil && s.Record != "" {
			err = appendRecord(s.Record, report, s)
		}
		return err
	}

	sys, err := t.Prepare(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pizza bench: %s per phase, %d clients, %d regions, %s\n", s.Duration, s.Clients, s.Regions, loopName(s))

	base, err := runBaseline(ctx, sys, s)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	fmt.Fprintf(stdout, "baseline (pgx, same transaction): %.0f tx/s, p50 %s p99 %s\n", base.perSecond, base.p(50), base.p(99))

	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- sys.Serve(sctx) }()
	defer func() { stop(); <-served }()
	if s.CPUProfile != "" {
		f, err := os.Create(s.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	ours, err := runSystem(ctx, t, sys, s)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	if s.MemProfile != "" { // allocations since the process began: mostly the system phase's
		f, err := os.Create(s.MemProfile)
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
	if s.Record != "" {
		return appendRecord(s.Record, report, s)
	}
	return nil
}

func loopName(s Settings) string {
	if s.Rate > 0 {
		return fmt.Sprintf("open loop at %d orders/s", s.Rate)
	}
	return "closed loop"
}

// FreePort is a 127.0.0.1 address no one listens on now.
func FreePort() (string, error) {
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
func drive(ctx context.Context, s Settings, do func(ctx context.Context, client int) error) *phase {
	var (
		p    phase
		mu   sync.Mutex
		wg   sync.WaitGroup
		n    atomic.Int64
		errs atomic.Int64
	)
	ctx, cancel := context.WithTimeout(ctx, s.Duration)
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
	if s.Rate <= 0 {
		for c := range s.Clients {
			wg.Go(func() {
				for ctx.Err() == nil {
					start := time.Now()
					record(start, do(ctx, c))
				}
			})
		}
	} else {
		work := make(chan time.Time, s.Rate)
		for c := range s.Clients {
			wg.Go(func() {
				for at := range work {
					record(at, do(context.WithoutCancel(ctx), c))
				}
			})
		}
		interval := time.Second / time.Duration(s.Rate)
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

func (p *phase) format(base *phase, ratio float64, s Settings) string {
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
func appendRecord(path, report string, s Settings) error {
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
	settings := fmt.Sprintf("%s per phase, %d clients, %d regions, %s", s.Duration, s.Clients, s.Regions, loopName(s))
	if s.Subscribers > 0 {
		settings = fmt.Sprintf("%d idle myPage subscribers on one BFF", s.Subscribers)
	}
	_, err = fmt.Fprintf(f, "\n### %s `pizza bench` (commit %s)\n\nMachine: %d cores (%s), Go %s. Settings: %s.\n\n```\n%s```\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), strings.TrimSpace(string(commit)), runtime.NumCPU(), cpu,
		runtime.Version(), settings, report)
	return err
}
