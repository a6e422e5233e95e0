package graph

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/store"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/trace"
)

// Hub hands each live update this BFF replica hears to the subscribers it concerns: a myPage row
// (customercenter.mypage_updated) to its customer's subscribers, a store order (carried by the
// store's store.order_* events) to its store's board. It decodes each message once, shares the
// row between subscribers, and never blocks on a subscriber: each has a bounded queue, and one
// that cannot keep up is dropped (its subscription ends with an error) instead of stalling the
// others.
//
// Updates of one order can reach the BFF out of version order (they are relayed concurrently). The
// hub puts them back in order: a version that skips ahead is held up to holdFor waiting for the
// missing ones, then delivered anyway.
type Hub struct {
	myPage     *fanout[*model.MyPageOrder]
	boards     *fanout[*model.StoreOrder]
	sweepEvery time.Duration
	logger     *slog.Logger

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// fanout is the hub for one kind of row: its subscribers by group (a customer, a store), and the
// version each order has reached.
type fanout[T any] struct {
	what        string                                  // for the logs: "myPage", "store board"
	key         func(T) (group, id string, version int) // whose row, which order, which version
	buffer      int
	holdFor     time.Duration
	forgetAfter time.Duration
	logger      *slog.Logger

	mu     sync.Mutex
	subs   map[string]map[*subscriber[T]]struct{} // by group
	orders map[string]*orderStream[T]             // by orderId
}

// subscriber is one subscription: the rows waiting to be sent, oldest first. The hub only ever
// appends and wakes; the transport takes rows out with fill, on a goroutine that lives only while
// there is something to send.
type subscriber[T any] struct {
	group  string
	what   string
	key    func(T) (group, id string, version int)
	out    chan T              // what gqlgen's stream reads; fill puts one row at a time
	reread func() ([]T, error) // the current rows, oldest first
	logger *slog.Logger

	mu     sync.Mutex
	wake   func() // nil until the transport takes the stream over
	queue  []queued[T]
	bulk   int            // how many of the queued rows a replay or resync read (bounded by its own read)
	sent   map[string]int // the newest version of each order the client has or will have
	resync bool           // updates may have been missed: re-read the current rows
	ended  bool
	err    *gqlerror.Error // why it ended, if it failed
	closed bool            // out is closed
}

// offer queues a row unless the client has it already; false when the queue is full, which ends
// the subscription. The rows a replay or resync queued do not count against limit: they are a
// bounded read of the current rows, and a board or myPage larger than the buffer must not drop its
// subscriber before the client has read them.
func (s *subscriber[T]) offer(r T, limit int) bool {
	_, id, version := s.key(r)
	s.mu.Lock()
	ok := true
	switch {
	case s.ended || version <= s.sent[id]:
		s.mu.Unlock()
		return true
	case len(s.queue)-s.bulk >= limit:
		s.endLocked(coded(errs.Unavailable, "the subscriber fell too far behind and was dropped; resubscribe with seen"))
		ok = false
	default:
		s.queueLocked(r, false)
	}
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
	return ok
}

// queued is a row waiting to be sent; bulk when a replay or resync read it, not a live update.
type queued[T any] struct {
	row  T
	bulk bool
}

func (s *subscriber[T]) queueLocked(r T, bulk bool) {
	if s.sent == nil {
		s.sent = map[string]int{}
	}
	_, id, version := s.key(r)
	s.queue = append(s.queue, queued[T]{r, bulk})
	s.sent[id] = version
	if bulk {
		s.bulk++
	}
}

// queueNewerLocked queues the rows (oldest first) the client does not have yet.
func (s *subscriber[T]) queueNewerLocked(rows []T) {
	for _, r := range rows {
		if s.ended {
			return
		}
		if _, id, version := s.key(r); version > s.sent[id] {
			s.queueLocked(r, true)
		}
	}
}

// replay queues the current rows (oldest first) the client does not have yet: what a subscription
// that read them itself, before the transport took it over, starts with.
func (s *subscriber[T]) replay(rows []T) {
	s.mu.Lock()
	s.queueNewerLocked(rows)
	s.mu.Unlock()
}

// end ends the subscription with err; rows not yet sent are dropped.
func (s *subscriber[T]) end(err *gqlerror.Error) {
	s.mu.Lock()
	s.endLocked(err)
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
}

func (s *subscriber[T]) endLocked(err *gqlerror.Error) {
	if !s.ended {
		s.ended, s.err, s.queue, s.bulk = true, err, nil, 0
	}
}

// askResync marks that updates may have been missed.
func (s *subscriber[T]) askResync() {
	s.mu.Lock()
	s.resync = true
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// fill puts the next row into out, or closes out once the subscription ended (pushStream).
func (s *subscriber[T]) fill() bool {
	s.mu.Lock()
	if s.resync && !s.ended {
		s.resync = false
		s.mu.Unlock() // no lock across the read
		rows, err := s.reread()
		s.mu.Lock()
		if err != nil {
			s.logger.Warn(s.what+" resync failed", "group", s.group, "err", err)
			s.endLocked(coded(errs.Unavailable, "the current rows could not be read; resubscribe with seen"))
		}
		s.queueNewerLocked(rows)
	}
	filled := false
	switch {
	case s.closed:
	case len(s.queue) > 0:
		select {
		case s.out <- s.queue[0].row:
			if s.queue[0].bulk {
				s.bulk--
			}
			s.queue[0] = queued[T]{}
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

func (s *subscriber[T]) failure() *gqlerror.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

type orderStream[T any] struct {
	last    int
	held    map[int]T
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
		myPage: newFanout("myPage", func(r *model.MyPageOrder) (string, string, int) { return r.CustomerID, r.OrderID, r.Version },
			buffer, holdFor, forgetAfter, logger),
		boards: newFanout("store board", func(r *model.StoreOrder) (string, string, int) { return r.StoreID, r.OrderID, r.Version },
			buffer, holdFor, forgetAfter, logger),
		sweepEvery: sweepEvery,
		logger:     logger,
		done:       make(chan struct{}),
	}
	h.wg.Go(h.sweep)
	return h
}

func newFanout[T any](what string, key func(T) (string, string, int), buffer int, holdFor, forgetAfter time.Duration, logger *slog.Logger) *fanout[T] {
	return &fanout[T]{
		what: what, key: key, buffer: buffer, holdFor: holdFor, forgetAfter: forgetAfter, logger: logger,
		subs:   map[string]map[*subscriber[T]]struct{}{},
		orders: map[string]*orderStream[T]{},
	}
}

// Close stops the hub's housekeeping.
func (h *Hub) Close() {
	h.closeOnce.Do(func() { close(h.done) })
	h.myPage.stopTimers()
	h.boards.stopTimers()
	h.wg.Wait()
}

func (f *fanout[T]) stopTimers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, os := range f.orders {
		if os.timer != nil {
			os.timer.Stop()
		}
	}
}

// subscribe registers a subscriber for a customer's myPage rows. reread reads the current ones,
// for a resync, or at once when replay is set; sent is the version of each order the client holds.
func (h *Hub) subscribe(customerID string, reread func() ([]customercenter.Row, error), sent map[string]int, replay bool) *subscriber[*model.MyPageOrder] {
	return h.myPage.subscribe(customerID, func() ([]*model.MyPageOrder, error) {
		rows, err := reread()
		out := make([]*model.MyPageOrder, len(rows))
		for i, row := range rows { // customercenter answers newest first
			out[len(rows)-1-i] = toMyPage(row)
		}
		return out, err
	}, sent, replay)
}

// subscribe registers a subscriber for a group's rows. reread reads the current ones (oldest
// first), for a resync, or at once when replay is set; sent is the version of each order the
// client holds.
func (f *fanout[T]) subscribe(group string, reread func() ([]T, error), sent map[string]int, replay bool) *subscriber[T] {
	s := &subscriber[T]{
		group:  group,
		what:   f.what,
		key:    f.key,
		out:    make(chan T, 1),
		reread: reread,
		logger: f.logger,
		sent:   sent,
		resync: replay,
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[group] == nil {
		f.subs[group] = map[*subscriber[T]]struct{}{}
	}
	f.subs[group][s] = struct{}{}
	return s
}

func (f *fanout[T]) unsubscribe(s *subscriber[T]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(s)
}

func (f *fanout[T]) removeLocked(s *subscriber[T]) {
	set := f.subs[s.group]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(f.subs, s.group)
	}
}

// Subscribers counts the current subscribers: myPage's and the store boards'.
func (h *Hub) Subscribers() int { return h.myPage.count() + h.boards.count() }

func (f *fanout[T]) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, set := range f.subs {
		n += len(set)
	}
	return n
}

// LiveKeys are the routing keys a Hub takes: what each BFF replica's listener binds.
var LiveKeys = []string{
	lifecycle.MyPageUpdated, lifecycle.StoreOrderReceived, lifecycle.StoreOrderCooked, lifecycle.StoreOrderCancelled,
}

// Publish takes one message body of LiveKeys.
func (h *Hub) Publish(body []byte) {
	// One decoding pass for the envelope and the row: the typed Payload shadows the event's raw
	// one. A myPage update's payload is the row; a store event's carries the store order.
	var msg struct {
		outbox.Event
		Payload struct {
			customercenter.Row
			StoreOrder *store.Order `json:"storeOrder"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		h.logger.Warn("ignoring a malformed live update", "err", err)
		return
	}
	ev := msg.Event
	if err := ev.Validate(); err != nil {
		h.logger.Warn("ignoring a malformed live update", "event_id", ev.ID, "err", err)
		return
	}
	switch ev.Type {
	case lifecycle.MyPageUpdated:
		row := msg.Payload.Row
		if row.OrderID == "" {
			h.logger.Warn("ignoring a myPage update without a row", "event_id", ev.ID)
			return
		}
		_, span := outbox.StartSpan(context.Background(), "push", ev, trace.SpanKindConsumer)
		defer span.End()
		h.myPage.publish(toMyPage(row), row.PlacedAt)
	default:
		so := msg.Payload.StoreOrder
		if so == nil || so.StoreID == "" || so.OrderID != ev.OrderID {
			return // no store has the order (rejected, or cancelled before it arrived), or an older store's event
		}
		_, span := outbox.StartSpan(context.Background(), "push", ev, trace.SpanKindConsumer)
		defer span.End()
		h.boards.publish(toStoreOrder(*so), so.ReceivedAt)
	}
}

// publish hands r to its group's subscribers in its order's version order. since is when the
// order began (placed, received), zero when unknown.
func (f *fanout[T]) publish(r T, since time.Time) {
	_, id, version := f.key(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	os := f.orders[id]
	if os == nil {
		// held is made when a version first skips ahead: most orders never do.
		os = &orderStream[T]{}
		if since.Unix() > 0 && time.Since(since) > f.forgetAfter {
			// Known before and forgotten since (a cook, a delivery, minutes later): the versions
			// before this one went out long ago, nothing is worth waiting for.
			os.last = version - 1
		}
		f.orders[id] = os
	}
	os.touched = time.Now()
	switch {
	case version <= os.last:
		return // a duplicate, or older than what was delivered
	case version == os.last+1:
		f.deliverLocked(os, r)
		f.flushLocked(os, false)
	default:
		if os.held == nil {
			os.held = map[int]T{}
		}
		os.held[version] = r
		if os.timer == nil {
			os.timer = time.AfterFunc(f.holdFor, func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				os.timer = nil
				f.flushLocked(os, true)
			})
		}
	}
}

// flushLocked delivers held rows that are next in line; with force, all of them in order.
func (f *fanout[T]) flushLocked(os *orderStream[T], force bool) {
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
		f.deliverLocked(os, os.held[v])
		delete(os.held, v)
	}
	if len(os.held) == 0 && os.timer != nil {
		os.timer.Stop()
		os.timer = nil
	}
}

func (f *fanout[T]) deliverLocked(os *orderStream[T], r T) {
	group, _, version := f.key(r)
	os.last = version
	for s := range f.subs[group] {
		if !s.offer(r, f.buffer) {
			f.logger.Warn("dropping a "+f.what+" subscriber that cannot keep up", "group", s.group, "buffer", f.buffer)
			f.removeLocked(s)
		}
	}
}

// Resync tells every subscriber that updates may have been missed (the listener reconnected).
func (h *Hub) Resync() {
	h.myPage.resync()
	h.boards.resync()
}

func (f *fanout[T]) resync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, set := range f.subs {
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
			h.myPage.forget(now)
			h.boards.forget(now)
		}
	}
}

func (f *fanout[T]) forget(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, os := range f.orders {
		if now.Sub(os.touched) > f.forgetAfter && len(os.held) == 0 {
			delete(f.orders, id)
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
