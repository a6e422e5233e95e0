package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
)

// runSystem drives placeOrder through the GraphQL endpoint, each client watching its own customer's
// myPage on a websocket to time freshness (placeOrder acknowledged -> RECEIVED pushed).
func runSystem(ctx context.Context, t Target, sys System, s Settings) (*phase, error) {
	base := "http://" + sys.BFFAddr
	auth, err := graph.NewAuth(t.AuthSecret)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, sys); err != nil {
		return nil, err
	}
	admin, _ := auth.Mint(model.RoleAdmin, "", time.Hour)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: s.Clients * 2}}
	for r := range s.Regions {
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
	tokens := make([]string, s.Clients)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var (
		watchers          sync.WaitGroup
		subscriptionsLost atomic.Int64
	)
	for c := range s.Clients {
		tokens[c], _ = auth.Mint(model.RoleCustomer, fmt.Sprint("bench-", c), 2*time.Hour)
		conn, err := subscribe(wctx, base, tokens[c], fmt.Sprint("bench-", c))
		if err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		watchers.Go(func() {
			defer conn.CloseNow()
			for {
				data, err := readNext(wctx, conn)
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
		time.Sleep(s.Duration / 4)
		backlogStart <- backlogCounts(ctx, t, sys)
	}()
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	hostBefore, hostOK := readHostCPU()
	const place = `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { id status } }`
	p := drive(ctx, s, func(ctx context.Context, c int) error {
		in := map[string]any{"customerId": fmt.Sprint("bench-", c), "pizza": "bench", "qty": 1, "region": fmt.Sprint("region-", c%s.Regions)}
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

	end := backlogCounts(ctx, t, sys)
	start := <-backlogStart
	var total0, total1 int64
	for i := range end {
		total0 += start[i]
		total1 += end[i]
	}
	p.grew = total1 > total0+int64(p.perSecond) // more than a second's worth of new backlog
	names := backlogNames(sys)
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

func waitReady(ctx context.Context, sys System) error {
	addrs := []string{sys.BFFAddr}
	for _, s := range sys.Services {
		addrs = append(addrs, s.Addr)
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

func subscribe(ctx context.Context, base, tok, customer string) (*websocket.Conn, error) {
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

// readNext returns the next message of a graphql-transport-ws subscription, answering the
// server's keep-alive pings on the way (unanswered, the BFF closes the socket).
func readNext(ctx context.Context, conn *websocket.Conn) ([]byte, error) {
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

func backlogNames(sys System) []string {
	var names []string
	for _, s := range sys.Services {
		names = append(names, "outbox."+string(s.Name))
	}
	for _, s := range sys.Services {
		names = append(names, s.Queue)
	}
	return names
}

// backlogCounts reads each service's unrelayed outbox jobs, then each service queue's depth.
func backlogCounts(ctx context.Context, t Target, sys System) []int64 {
	var out []int64
	for _, s := range sys.Services {
		var n int64
		if conn, err := pgx.Connect(ctx, s.DatabaseURL); err == nil {
			_ = conn.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE state IN ('available','retryable','running','scheduled')`).Scan(&n)
			conn.Close(ctx)
		}
		out = append(out, n)
	}
	conn, err := amqp.Dial(t.AMQPURL)
	if err != nil {
		return append(out, make([]int64, len(sys.Services))...)
	}
	defer conn.Close()
	for _, s := range sys.Services {
		var n int64
		if ch, err := conn.Channel(); err == nil {
			if q, err := ch.QueueDeclarePassive(s.Queue, true, false, false, false, nil); err == nil {
				n = int64(q.Messages)
			}
			_ = ch.Close()
		}
		out = append(out, n)
	}
	return out
}
