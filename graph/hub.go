package graph

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/lifecycle"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/trace"
)

// Hub hands each myPage update this BFF replica hears to the subscribers of its customer. It
// decodes each message once, shares the row between subscribers, and never blocks on a subscriber:
// each has a bounded queue, and one that cannot keep up is dropped (its subscription ends with an
// error) instead of stalling the others.
//
// Updates of one order can reach the BFF out of version order (they are relayed concurrently). The
// hub puts them back in order: a version that skips ahead is held up to holdFor waiting for the
// missing ones, then delivered anyway.
type Hub struct {
	buffer      int
	holdFor     time.Duration
	forgetAfter time.Duration
	sweepEvery  time.Duration
	logger      *slog.Logger

	mu     sync.Mutex
	subs   map[string]map[*subscriber]struct{} // by customerId
	orders map[string]*orderStream             // by orderId
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// subscriber is one myPage subscription: the rows waiting to be sent, oldest first. The hub only
// ever appends and wakes; the transport takes rows out with fill, on a goroutine that lives only
// while there is something to send.
type subscriber struct {
	customerID string
	out        chan *model.MyPageOrder // what gqlgen's stream reads; fill puts one row at a time
	reread     func() ([]customercenter.Row, error)
	logger     *slog.Logger

	mu     sync.Mutex
	wake   func() // nil until the transport takes the stream over
	queue  []*model.MyPageOrder
	sent   map[string]int // the newest version of each order the client has or will have
	resync bool           // updates may have been missed: re-read the current rows
	ended  bool
	err    *gqlerror.Error // why it ended, if it failed
	closed bool            // out is closed
}

// offer queues a row unless the client has it already; false when the queue is full, which ends
// the subscription.
func (s *subscriber) offer(r *model.MyPageOrder, limit int) bool {
	s.mu.Lock()
	ok := true
	switch {
	case s.ended || r.Version <= s.sent[r.OrderID]:
		s.mu.Unlock()
		return true
	case len(s.queue) >= limit:
		s.endLocked(coded("UNAVAILABLE", "the subscriber fell too far behind and was dropped; resubscribe with seen"))
		ok = false
	default:
		s.queueLocked(r)
	}
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
	return ok
}

func (s *subscriber) queueLocked(r *model.MyPageOrder) {
	if s.sent == nil {
		s.sent = map[string]int{}
	}
	s.queue = append(s.queue, r)
	s.sent[r.OrderID] = r.Version
}

// end ends the subscription with err; rows not yet sent are dropped.
func (s *subscriber) end(err *gqlerror.Error) {
	s.mu.Lock()
	s.endLocked(err)
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
}

func (s *subscriber) endLocked(err *gqlerror.Error) {
	if !s.ended {
		s.ended, s.err, s.queue = true, err, nil
	}
}

// askResync marks that updates may have been missed.
func (s *subscriber) askResync() {
	s.mu.Lock()
	s.resync = true
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// fill puts the next row into out, or closes out once the subscription ended (pushStream).
func (s *subscriber) fill() bool {
	s.mu.Lock()
	if s.resync && !s.ended {
		s.resync = false
		s.mu.Unlock() // no lock across the read
		rows, err := s.reread()
		s.mu.Lock()
		if err != nil {
			s.logger.Warn("myPage resync failed", "customer_id", s.customerID, "err", err)
			s.endLocked(coded("UNAVAILABLE", "the current rows could not be read; resubscribe with seen"))
		}
		for i := len(rows) - 1; i >= 0 && !s.ended; i-- { // oldest first
			if r := toMyPage(rows[i]); r.Version > s.sent[r.OrderID] {
				s.queueLocked(r)
			}
		}
	}
	filled := false
	switch {
	case s.closed:
	case len(s.queue) > 0:
		select {
		case s.out <- s.queue[0]:
			s.queue[0] = nil
			s.queue = s.queue[1:]
			if len(s.queue) == 0 {
				s.queue = nil // let the array go
			}
		default: // the last row is still there to read
		}
		filled = true
	case s.ended:
		close(s.out)
		s.closed = true
		filled = true
	}
	s.mu.Unlock()
	return filled
}

func (s *subscriber) failure() *gqlerror.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

type orderStream struct {
	last    int
	held    map[int]*model.MyPageOrder
	timer   *time.Timer
	touched time.Time
}

// NewHub returns a hub; Close stops its housekeeping.
func NewHub(buffer int, holdFor time.Duration, logger *slog.Logger) *Hub {
	return newHub(buffer, holdFor, time.Minute, 10*time.Second, logger)
}

// newHub is NewHub with its memory settings: an order's version is forgotten forgetAfter after its
// last update, checked every sweepEvery.
func newHub(buffer int, holdFor, forgetAfter, sweepEvery time.Duration, logger *slog.Logger) *Hub {
	h := &Hub{
		buffer: buffer, holdFor: holdFor, forgetAfter: forgetAfter, sweepEvery: sweepEvery, logger: logger,
		subs:   map[string]map[*subscriber]struct{}{},
		orders: map[string]*orderStream{},
		done:   make(chan struct{}),
	}
	h.wg.Go(h.sweep)
	return h
}

// Close stops the hub's housekeeping.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	for _, os := range h.orders {
		if os.timer != nil {
			os.timer.Stop()
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// subscribe registers a subscriber for a customer's rows. reread reads the current ones, for a
// resync, or at once when replay is set; sent is the version of each order the client holds.
func (h *Hub) subscribe(customerID string, reread func() ([]customercenter.Row, error), sent map[string]int, replay bool) *subscriber {
	s := &subscriber{
		customerID: customerID,
		out:        make(chan *model.MyPageOrder, 1),
		reread:     reread,
		logger:     h.logger,
		sent:       sent,
		resync:     replay,
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[customerID] == nil {
		h.subs[customerID] = map[*subscriber]struct{}{}
	}
	h.subs[customerID][s] = struct{}{}
	return s
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *Hub) removeLocked(s *subscriber) {
	set := h.subs[s.customerID]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.subs, s.customerID)
	}
}

// Subscribers counts the current subscribers.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.subs {
		n += len(set)
	}
	return n
}

// Publish takes one customercenter.mypage_updated message body.
func (h *Hub) Publish(body []byte) {
	// One decoding pass for the envelope and the row: the typed Payload shadows the event's raw one.
	var msg struct {
		outbox.Event
		Payload customercenter.Row `json:"payload"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		h.logger.Warn("ignoring a malformed myPage update", "err", err)
		return
	}
	ev, row := msg.Event, msg.Payload
	if err := ev.Validate(); err != nil || row.OrderID == "" {
		h.logger.Warn("ignoring a myPage update without a row", "event_id", ev.ID, "err", err)
		return
	}
	r := toMyPage(row)
	_, span := outbox.StartSpan(context.Background(), "push", ev, trace.SpanKindConsumer)
	defer span.End()

	h.mu.Lock()
	defer h.mu.Unlock()
	os := h.orders[r.OrderID]
	if os == nil {
		// held is made when a version first skips ahead: most orders never do.
		os = &orderStream{}
		if placed := row.PlacedAt; placed.Unix() > 0 && time.Since(placed) > h.forgetAfter {
			// Known before and forgotten since (a cook, a delivery, minutes later): the versions
			// before this one went out long ago, nothing is worth waiting for.
			os.last = r.Version - 1
		}
		h.orders[r.OrderID] = os
	}
	os.touched = time.Now()
	switch {
	case r.Version <= os.last:
		return // a duplicate, or older than what was delivered
	case r.Version == os.last+1:
		h.deliverLocked(os, r)
		h.flushLocked(os, false)
	default:
		if os.held == nil {
			os.held = map[int]*model.MyPageOrder{}
		}
		os.held[r.Version] = r
		if os.timer == nil {
			os.timer = time.AfterFunc(h.holdFor, func() {
				h.mu.Lock()
				defer h.mu.Unlock()
				os.timer = nil
				h.flushLocked(os, true)
			})
		}
	}
}

// flushLocked delivers held rows that are next in line; with force, all of them in order.
func (h *Hub) flushLocked(os *orderStream, force bool) {
	versions := make([]int, 0, len(os.held))
	for v := range os.held {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	for _, v := range versions {
		if v <= os.last {
			delete(os.held, v)
			continue
		}
		if v != os.last+1 && !force {
			return
		}
		h.deliverLocked(os, os.held[v])
		delete(os.held, v)
	}
	if len(os.held) == 0 && os.timer != nil {
		os.timer.Stop()
		os.timer = nil
	}
}

func (h *Hub) deliverLocked(os *orderStream, r *model.MyPageOrder) {
	os.last = r.Version
	for s := range h.subs[r.CustomerID] {
		if !s.offer(r, h.buffer) {
			h.logger.Warn("dropping a myPage subscriber that cannot keep up", "customer_id", s.customerID, "buffer", h.buffer)
			h.removeLocked(s)
		}
	}
}

// Resync tells every subscriber that updates may have been missed (the listener reconnected).
func (h *Hub) Resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.subs {
		for s := range set {
			s.askResync()
		}
	}
}

// sweep forgets the version of orders not heard of for forgetAfter, so memory follows the recent
// rate (a minute of orders), not the day's. Subscribers keep their own versions, so a forgotten
// order never sends a client backwards.
func (h *Hub) sweep() {
	t := time.NewTicker(h.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			h.mu.Lock()
			for id, os := range h.orders {
				if now.Sub(os.touched) > h.forgetAfter && len(os.held) == 0 {
					delete(h.orders, id)
				}
			}
			h.mu.Unlock()
		}
	}
}

// stepOrder is the order a row's steps are listed in: the lattice's, the ends last.
var stepOrder = []lifecycle.Status{lifecycle.Ordered, lifecycle.Received, lifecycle.Cooked, lifecycle.DeliveryStarted,
	lifecycle.Cancelled, lifecycle.Rejected}

func toSteps(steps customercenter.Steps) []*model.OrderStep {
	out := make([]*model.OrderStep, 0, len(steps))
	for _, st := range stepOrder {
		if at, ok := steps[st]; ok {
			out = append(out, &model.OrderStep{Status: model.OrderStatus(st), At: at})
		}
	}
	return out
}

func toMyPage(row customercenter.Row) *model.MyPageOrder {
	r := &model.MyPageOrder{
		ID:         row.OrderID, // the row's cache key: an order has one row
		OrderID:    row.OrderID,
		CustomerID: row.CustomerID,
		Pizza:      row.Pizza,
		Qty:        row.Qty,
		Region:     row.Region,
		Status:     model.OrderStatus(row.Status),
		StoreID:    optional(row.StoreID),
		DeliveryID: optional(row.DeliveryID),
		UpdatedAt:  row.UpdatedAt,
		Steps:      toSteps(row.Steps),
		Version:    int(row.Version),
	}
	if reason := row.ShownRejectReason(); reason != "" {
		rr := model.RejectReason(reason)
		r.RejectReason = &rr
	}
	return r
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
