package order

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/services/api"
)

// served is the order service behind a real HTTP server, counting the requests and placements
// that reach it.
type served struct {
	url                   string
	requests, placements  atomic.Int64
	batches, batchedItems atomic.Int64
}

func serve(t *testing.T, s *Service, routes func(*http.ServeMux), gate func()) *served {
	t.Helper()
	mux := http.NewServeMux()
	routes(mux)
	sv := &served{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sv.requests.Add(1)
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/orders") && !strings.HasSuffix(r.URL.Path, "/cancel") {
			var body bytes.Buffer
			_, _ = body.ReadFrom(r.Body)
			if r.URL.Path == "/orders/batch" {
				var ins []json.RawMessage
				_ = json.Unmarshal(body.Bytes(), &ins)
				sv.batches.Add(1)
				sv.batchedItems.Add(int64(len(ins)))
				sv.placements.Add(int64(len(ins)))
			} else {
				sv.placements.Add(1)
			}
			r.Body = readCloser{bytes.NewReader(body.Bytes())}
		}
		if gate != nil {
			gate()
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	sv.url = srv.URL
	return sv
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func routesOf(s *Service) func(*http.ServeMux) {
	return func(mux *http.ServeMux) { s.Routes(mux, slog.New(slog.DiscardHandler)) }
}

// Concurrent placements through one client share requests, and each still gets its own answer:
// its order, or its own error.
func TestConcurrentPlacementsShareRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newGroupService(t)
	sv := serve(t, s, routesOf(s), nil)
	c := NewClient(sv.url)

	const n = 200
	orders, errs := placeAll(n, func(i int) (Order, error) {
		in := PlaceInput{CustomerID: fmt.Sprintf("c-%d", i), Pizza: "페퍼로니", Qty: 1, Region: "강남구"}
		if i%10 == 0 {
			in.Qty = 0 // bad input: refused on its own, nothing written for it
		}
		return c.Place(ctx, in)
	})
	ids := map[string]bool{}
	for i := range n {
		if i%10 == 0 {
			require.Error(t, errs[i], "placement %d", i)
			require.Equal(t, api.BadUserInput, api.CodeOf(errs[i]), "placement %d", i)
			continue
		}
		require.NoError(t, errs[i], "placement %d", i)
		require.Equal(t, fmt.Sprintf("c-%d", i), orders[i].CustomerID, "placement %d got another's order", i)
		ids[orders[i].ID] = true
	}
	require.Len(t, ids, n-n/10, "every valid placement is its own order")
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&rows))
	require.Equal(t, n-n/10, rows)
	require.Equal(t, int64(n), sv.placements.Load())
	require.Less(t, sv.requests.Load(), int64(n), "placements shared requests")
	require.Positive(t, sv.batches.Load())
}

// A placement whose caller gives up while it waits for a free sender is never sent.
func TestPlacementAbandonedWhileWaitingIsNotSent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newGroupService(t)
	entered, release := make(chan struct{}, maxSenders), make(chan struct{})
	sv := serve(t, s, routesOf(s), func() {
		entered <- struct{}{}
		<-release
	})
	c := NewClient(sv.url)

	busy := make(chan error, maxSenders)
	for i := range maxSenders { // every sender busy with one placement, held at the server
		go func() {
			_, err := c.Place(ctx, PlaceInput{CustomerID: fmt.Sprintf("busy-%d", i), Pizza: "페퍼로니", Qty: 1, Region: "강남구"})
			busy <- err
		}()
		<-entered
	}
	waiting, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := c.Place(waiting, PlaceInput{CustomerID: "gave-up", Pizza: "페퍼로니", Qty: 1, Region: "강남구"})
		gaveUp <- err
	}()
	require.Eventually(t, func() bool {
		c.b.mu.Lock()
		defer c.b.mu.Unlock()
		return len(c.b.waiting) == 1
	}, 5*time.Second, time.Millisecond, "the fifth placement waits for a sender")
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)
	close(release)
	for range maxSenders {
		require.NoError(t, <-busy)
	}
	require.Equal(t, int64(maxSenders), sv.placements.Load(), "the abandoned placement never reached the service")
}

// An order service from before batches (no POST /orders/batch) still takes every placement:
// the client falls back to one request each.
func TestBatchesFallBackToSinglePlacements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newGroupService(t)
	logger := slog.New(slog.DiscardHandler)
	old := func(mux *http.ServeMux) { // the routes as they were: no batch
		mux.HandleFunc("POST /orders", api.Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
			var in PlaceInput
			if err := api.ReadJSON(w, r, &in); err != nil {
				return err
			}
			o, err := s.Place(r.Context(), in)
			if err != nil {
				return err
			}
			api.WriteJSON(w, http.StatusOK, o)
			return nil
		}))
	}
	sv := serve(t, s, old, nil)
	c := NewClient(sv.url)
	const n = 50
	_, errs := placeAll(n, func(i int) (Order, error) {
		return c.Place(ctx, PlaceInput{CustomerID: fmt.Sprintf("c-%d", i), Pizza: "페퍼로니", Qty: 1, Region: "강남구"})
	})
	for i, err := range errs {
		require.NoError(t, err, "placement %d", i)
	}
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&rows))
	require.Equal(t, n, rows)
	if sv.batches.Load() > 0 {
		require.True(t, c.b.unsupported(), "a refused batch turns batching off for a while")
	}
}

// The batch route refuses what is not a batch of 1 to MaxBatch placements, as a whole.
func TestBatchRouteRefusesBadBatches(t *testing.T) {
	t.Parallel()
	s, pool := newGroupService(t)
	sv := serve(t, s, routesOf(s), nil)
	for _, body := range []string{`[]`, `{}`, `[` + strings.Repeat(`{"customerId":"c","pizza":"p","qty":1,"region":"r"},`, MaxBatch) + `{"customerId":"c","pizza":"p","qty":1,"region":"r"}]`} {
		resp, err := http.Post(sv.url+"/orders/batch", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		var e struct{ Error *api.Error }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, body[:min(len(body), 20)])
		require.Equal(t, api.BadUserInput, e.Error.Code)
	}
	var rows int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&rows))
	require.Zero(t, rows)
}
