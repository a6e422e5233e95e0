package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
)

// runSubscribers measures idle subscriptions on one BFF: a BFF runs in a child process (so the
// clients' own memory is not counted), n clients each subscribe to their own myPage, and the
// BFF's heap and goroutines are read from its /metrics before and after. Then one update per
// client is published straight to the exchange, and the time from publish to each push is timed.
func runSubscribers(ctx context.Context, t Target, n int, cpuprofile, memprofile string, stdout io.Writer) (string, error) {
	addr, err := FreePort()
	if err != nil {
		return "", err
	}
	opsAddr, err := FreePort() // the BFF's /metrics and profiles
	if err != nil {
		return "", err
	}
	exchange := "pizza.events.bench-subscribers"
	child := exec.CommandContext(ctx, t.BFFCommand[0], t.BFFCommand[1:]...)
	child.Env = append(os.Environ(), "PIZZA_HTTP_ADDR="+addr, "PIZZA_OPS_ADDR="+opsAddr, "PIZZA_EXCHANGE="+exchange,
		"PIZZA_LOG_LEVEL=error", "PIZZA_PPROF=true", "AMQP_URL="+t.AMQPURL)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		return "", err
	}
	defer func() { _ = child.Process.Signal(os.Interrupt); _ = child.Wait() }()
	base, ops := "http://"+addr, "http://"+opsAddr
	if err := waitURL(base+"/readyz", 30*time.Second); err != nil {
		return "", err
	}
	auth, err := graph.NewAuth(t.AuthSecret)
	if err != nil {
		return "", err
	}

	settle := func(profile string) (map[string]float64, error) {
		// The heap profile with gc=1 collects first: the heap read next is live objects only,
		// not the garbage the handshakes left.
		resp, err := http.Get(ops + "/debug/pprof/heap?gc=1")
		if err != nil {
			return nil, err
		}
		out := io.Discard
		if profile != "" {
			f, err := os.Create(profile)
			if err != nil {
				resp.Body.Close()
				return nil, err
			}
			defer f.Close()
			out = f
		}
		_, err = io.Copy(out, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		return scrape(ops + "/metrics"), nil
	}
	before, err := settle("")
	if err != nil {
		return "", err
	}

	type client struct {
		conn *websocket.Conn
		got  chan time.Time
	}
	clients := make([]client, n)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		tok, _ := auth.Mint(model.RoleCustomer, fmt.Sprint("sub-", i), time.Hour)
		conn, err := subscribe(cctx, base, tok, fmt.Sprint("sub-", i))
		if err != nil {
			return "", fmt.Errorf("subscriber %d: %w", i, err)
		}
		clients[i] = client{conn: conn, got: make(chan time.Time, 1)}
		wg.Go(func() {
			defer conn.CloseNow()
			for {
				data, err := readNext(cctx, conn)
				if err != nil {
					return
				}
				if bytes.Contains(data, []byte(`"type":"next"`)) {
					select {
					case clients[i].got <- time.Now():
					default:
					}
				}
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for scrape(ops + "/metrics")["pizza_bff_subscribers"] < float64(n) {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the BFF never counted %d subscribers", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	after, err := settle(memprofile)
	if err != nil {
		return "", err
	}

	conn, err := amqp.Dial(t.AMQPURL)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return "", err
	}
	profiled := make(chan error, 1)
	if cpuprofile != "" { // the BFF's CPU while it pushes
		go func() { profiled <- fetchTo(ops+"/debug/pprof/profile?seconds=3", cpuprofile) }()
		time.Sleep(100 * time.Millisecond) // the profile starts when its request arrives; give it that
	} else {
		profiled <- nil
	}
	hostBefore, _ := readHostCPU()
	bffBefore, _ := procUsed(child.Process.Pid)
	selfBefore, _ := procUsed(os.Getpid())
	sent := make([]time.Time, n)
	for i := range n {
		row := customercenter.Row{Version: 1}
		row.OrderID, row.CustomerID, row.Status, row.Pizza = fmt.Sprint("o-", i), fmt.Sprint("sub-", i), lifecycle.Received, "bench"
		ev, err := outbox.NewEvent(lifecycle.MyPageUpdated, row.OrderID, "bench", row)
		if err != nil {
			return "", err
		}
		body, _ := json.Marshal(ev)
		sent[i] = time.Now()
		if err := ch.PublishWithContext(ctx, exchange, lifecycle.MyPageUpdated, false, false,
			amqp.Publishing{MessageId: ev.ID.String(), Body: body}); err != nil {
			return "", err
		}
	}
	var lat []time.Duration
	missed := 0
	for i, c := range clients {
		select {
		case at := <-c.got:
			lat = append(lat, at.Sub(sent[i]))
		case <-time.After(10 * time.Second):
			missed++
		}
	}
	hostAfter, _ := readHostCPU()
	bffAfter, _ := procUsed(child.Process.Pid)
	selfAfter, _ := procUsed(os.Getpid())
	busy, byGroup := hostAfter.since(hostBefore)
	cancel()
	wg.Wait()
	_ = ch.ExchangeDelete(exchange, false, false)

	if err := <-profiled; err != nil {
		return "", fmt.Errorf("cpu profile: %w", err)
	}
	per := func(metric string) float64 { return (after[metric] - before[metric]) / float64(n) / 1024 }
	report := fmt.Sprintf("%d idle subscribers on one BFF (its own process):\n"+
		"  per subscriber: live heap +%.1f KiB, goroutine stacks +%.1f KiB (%.1f goroutines), resident memory +%.1f KiB\n"+
		"  a push to each (one update per customer, published back to back): p50 %s  p99 %s  max %s  (%d not received in 10s)\n"+
		"  machine CPU from the first publish to the last push: %s (the BFF %s, RabbitMQ %s, this bench's publisher and clients %s)\n",
		n, per("go_memstats_heap_alloc_bytes"), per("go_memstats_stack_inuse_bytes"),
		(after["go_goroutines"]-before["go_goroutines"])/float64(n), per("process_resident_memory_bytes"),
		percentile(lat, 50), percentile(lat, 99), percentile(lat, 100), missed,
		busy.Round(time.Millisecond), bffAfter-bffBefore, byGroup["RabbitMQ"], selfAfter-selfBefore)
	fmt.Fprint(stdout, report)
	return report, nil
}

// fetchTo saves what url answers to file.
func fetchTo(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func waitURL(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never answered 200", url)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape reads the unlabelled series of a Prometheus text exposition.
func scrape(url string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
