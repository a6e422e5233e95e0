package graph

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"go.opentelemetry.io/otel/trace"
)

// Hub hands each myPage update this BFF replica hears to the subscribers of its customer. It
// decodes each message once, shares the row between subscribers, and never blocks on a subscriber:
// each has a bounded buffer, and one that cannot keep up is dropped (its subscription ends with an
// error) instead of stalling the others.
//
// Updates of one order can reach the BFF out of version order (they are relayed concurrently). The
// hub puts them back in order: a version that skips ahead is held up to holdFor waiting for the
// missing ones, then delivered anyway.
type Hub struct {
	buffer  int
	holdFor time.Duration
	logger  *slog.Logger

	mu     sync.Mutex
	subs   map[string]map[*subscriber]struct{} // by customerId
	orders map[string]*orderStream             // by orderId
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

type subscriber struct {
	customerID string
	rows       chan *model.MyPageOrder
	dropped    chan struct{} // closed by the hub when it gives up on this subscriber
	resync     chan struct{} // a token: updates may have been missed, re-read the current rows
}

type orderStream struct {
	last    int
	held    map[int]*model.MyPageOrder
	timer   *time.Timer
	touched time.Time
}

// NewHub returns a hub; Close stops its housekeeping.
func NewHub(buffer int, holdFor time.Duration, logger *slog.Logger) *Hub {
	h := &Hub{
		buffer: buffer, holdFor: holdFor, logger: logger,
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

// subscribe registers a subscriber for a customer's rows.
func (h *Hub) subscribe(customerID string) *subscriber {
	s := &subscriber{
		customerID: customerID,
		rows:       make(chan *model.MyPageOrder, h.buffer),
		dropped:    make(chan struct{}),
		resync:     make(chan struct{}, 1),
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
	ev, err := outbox.ParseEvent(body)
	if err != nil {
		h.logger.Warn("ignoring a malformed myPage update", "err", err)
		return
	}
	var row customercenter.Row
	if err := ev.DecodePayload(&row); err != nil || row.OrderID == "" {
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
		os = &orderStream{} // held is made when a version first skips ahead: most orders never do
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
		select {
		case s.rows <- r:
		default:
			h.logger.Warn("dropping a myPage subscriber that cannot keep up", "customer_id", s.customerID, "buffer", h.buffer)
			h.removeLocked(s)
			close(s.dropped)
		}
	}
}

// Resync tells every subscriber that updates may have been missed (the listener reconnected).
func (h *Hub) Resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.subs {
		for s := range set {
			select {
			case s.resync <- struct{}{}:
			default: // one is already pending
			}
		}
	}
}

// sweep forgets the version of orders not heard of for a while, so memory follows activity.
func (h *Hub) sweep() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			h.mu.Lock()
			for id, os := range h.orders {
				if now.Sub(os.touched) > 10*time.Minute && len(os.held) == 0 {
					delete(h.orders, id)
				}
			}
			h.mu.Unlock()
		}
	}
}

func toMyPage(row customercenter.Row) *model.MyPageOrder {
	r := &model.MyPageOrder{
		OrderID:    row.OrderID,
		CustomerID: row.CustomerID,
		Pizza:      row.Pizza,
		Qty:        row.Qty,
		Region:     row.Region,
		Status:     model.OrderStatus(row.Status),
		StoreID:    optional(row.StoreID),
		DeliveryID: optional(row.DeliveryID),
		UpdatedAt:  row.UpdatedAt,
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
