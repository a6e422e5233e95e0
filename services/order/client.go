package order

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/1588-pizza/pizza/services/api"
)

// Client calls the order service's internal API.
type Client struct {
	c *api.Client
	b *batcher // nil: one request per placement
}

// NewClient returns a client for the order service at base. Concurrent placements share
// requests (POST /orders/batch), unless calls carry trace context, which is per request.
func NewClient(base string) *Client {
	c := &Client{c: api.NewClient(base)}
	if !api.Traced() {
		c.b = &batcher{c: c.c, senders: maxSenders}
	}
	return c
}

// Place places an order.
func (c *Client) Place(ctx context.Context, in PlaceInput) (Order, error) {
	if c.b == nil || c.b.unsupported() {
		return c.place(ctx, in)
	}
	return c.b.place(ctx, in)
}

func (c *Client) place(ctx context.Context, in PlaceInput) (Order, error) {
	var o Order
	return o, c.c.Do(ctx, http.MethodPost, "/orders", in, &o)
}

// Get returns one order.
func (c *Client) Get(ctx context.Context, id string) (Order, error) {
	var o Order
	return o, c.c.Do(ctx, http.MethodGet, "/orders/"+url.PathEscape(id), nil, &o)
}

// Cancel cancels an order.
func (c *Client) Cancel(ctx context.Context, id string) (Order, error) {
	var o Order
	return o, c.c.Do(ctx, http.MethodPost, "/orders/"+url.PathEscape(id)+"/cancel", nil, &o)
}

// maxSenders bounds the batch requests in flight from one client. Fewer means larger batches
// (less HTTP per order) but longer waits for a free sender.
const maxSenders = 4

// batchTimeout bounds one batch request: it serves several callers, so it is not cancelled
// with any one of them.
const batchTimeout = 30 * time.Second

// batcher sends the placements waiting when a sender is free as one request. Nothing waits for a
// batch to fill: a lone placement goes at once, alone, and batches grow only while every
// sender is busy, that is with the load.
type batcher struct {
	c *api.Client

	mu      sync.Mutex
	waiting []*pending
	senders int // senders free to start

	noBatchUntil atomic.Int64 // unix nanos: the service has no batch route (an older version)
}

// pending is a placement waiting for its answer.
type pending struct {
	ctx  context.Context
	in   PlaceInput
	done chan placed // buffered(1)
}

type placed struct {
	o   Order
	err error
}

func (b *batcher) unsupported() bool { return time.Now().UnixNano() < b.noBatchUntil.Load() }

func (b *batcher) place(ctx context.Context, in PlaceInput) (Order, error) {
	p := &pending{ctx: ctx, in: in, done: make(chan placed, 1)}
	b.mu.Lock()
	b.waiting = append(b.waiting, p)
	start := b.senders > 0
	if start {
		b.senders--
	}
	b.mu.Unlock()
	if start {
		go b.send()
	}
	select {
	case r := <-p.done:
		return r.o, r.err
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(b.waiting, p); i >= 0 { // not sent: it never will be
			b.waiting = slices.Delete(b.waiting, i, i+1)
		}
		b.mu.Unlock()
		return Order{}, ctx.Err()
	}
}

// send sends what waits, batch after batch, until nothing does.
func (b *batcher) send() {
	for {
		b.mu.Lock()
		n := min(len(b.waiting), MaxBatch)
		if n == 0 {
			b.senders++
			b.mu.Unlock()
			return
		}
		batch := slices.Clone(b.waiting[:n])
		b.waiting = slices.Delete(b.waiting, 0, n)
		b.mu.Unlock()
		b.sendBatch(batch)
	}
}

func (b *batcher) sendBatch(batch []*pending) {
	if len(batch) == 1 { // a request of its own costs the same, and keeps its caller's context
		p := batch[0]
		o, err := (&Client{c: b.c}).place(p.ctx, p.in)
		p.done <- placed{o, err}
		return
	}
	ins := make([]PlaceInput, len(batch))
	for i, p := range batch {
		ins[i] = p.in
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	var out []PlaceResult
	err := b.c.Do(ctx, http.MethodPost, "/orders/batch", ins, &out)
	if errors.Is(err, api.ErrNoRoute) {
		// An order service from before batches (during a rolling upgrade): one request each,
		// and ask again in a minute.
		b.noBatchUntil.Store(time.Now().Add(time.Minute).UnixNano())
		for _, p := range batch {
			o, err := (&Client{c: b.c}).place(p.ctx, p.in)
			p.done <- placed{o, err}
		}
		return
	}
	if err == nil && len(out) != len(batch) {
		err = fmt.Errorf("POST /orders/batch: %d answers for %d placements", len(out), len(batch))
	}
	for i, p := range batch {
		switch {
		case err != nil:
			p.done <- placed{err: err}
		case out[i].Error != nil:
			p.done <- placed{err: out[i].Error}
		case out[i].Order == nil:
			p.done <- placed{err: fmt.Errorf("POST /orders/batch: answer %d is empty", i)}
		default:
			p.done <- placed{o: *out[i].Order}
		}
	}
}
