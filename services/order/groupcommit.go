// The group commit: orders placed at the same time are written in one transaction, and announced
// with their events in the COMMIT's round trip.

package order

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// Group commit. Orders placed at the same time are written together: one transaction, their
// inserts pipelined in one round trip, their events in one statement, one commit (one WAL flush)
// for all. A placement joins the queue; at most maxCommitters placements at a time lead, each
// committing what is queued (up to maxGroup) and handing the lead to the first still waiting.
// Under light load a group is one order and nobody waits; under heavy load groups grow instead
// of transactions queueing for connections and the disk.
const (
	maxCommitters = 2
	maxGroup      = 64
	// commitTimeout bounds a group's transaction. The group does not end with one caller's
	// context: others share it, and an order its caller gave up on may still be written.
	commitTimeout = 10 * time.Second
)

// placement is one order on its way into a group commit.
type placement struct {
	ctx        context.Context
	in         PlaceInput
	status     lifecycle.Status
	reason     lifecycle.RejectReason
	retryAfter int
	lead       chan struct{} // receives the lead
	led        bool          // it leads or was handed the lead (under groups.mu): never twice
	done       chan struct{} // closed once o or err is set
	o          Order
	err        error
}

// groups is the group-commit queue.
type groups struct {
	mu      sync.Mutex
	queue   []*placement
	leaders int
}

// write queues p for the next group commit and returns its order.
func (s *Service) write(ctx context.Context, p *placement) (Order, error) {
	p.ctx, p.lead, p.done = ctx, make(chan struct{}, 1), make(chan struct{})
	g := &s.groups
	g.mu.Lock()
	g.queue = append(g.queue, p)
	leads := g.leaders < maxCommitters
	if leads {
		g.leaders++
		p.led = true
	}
	g.mu.Unlock()
	if leads {
		s.lead()
	}
	return s.await(ctx, p)
}

// await waits for p's group to commit, leading a group whenever p is handed the lead.
func (s *Service) await(ctx context.Context, p *placement) (Order, error) {
	for {
		select {
		case <-p.done:
			// Another leader may have committed p after p was handed the lead: pass it on, or
			// the slot it stands for is lost.
			select {
			case <-p.lead:
				s.lead()
			default:
			}
			if errors.Is(p.err, pgx.ErrNoRows) { // a concurrent request with the same key won
				return s.byKey(ctx, p.in.CustomerID, p.in.IdempotencyKey)
			}
			return p.o, p.err
		case <-p.lead:
			s.lead()
		}
	}
}

// lead commits one group, then passes the lead on to the first placement waiting that does not
// lead yet, or gives it up.
func (s *Service) lead() {
	g := &s.groups
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	g.mu.Unlock()

	if len(group) > 0 {
		s.commit(group)
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	for _, next := range g.queue {
		if !next.led { // one already leading, or handed the lead by another leader, will commit anyway
			next.led = true
			next.lead <- struct{}{} // buffered
			return
		}
	}
	g.leaders--
}

// commit writes a group in one transaction. When it fails and nothing was written, each
// placement is tried alone, so one order's failure is not the others'. A COMMIT whose answer was
// lost may have committed anyway: then every placement gets the error, as a lone caller would,
// since writing them again could record each order twice. The whole attempt, retries included,
// is bounded by commitTimeout.
func (s *Service) commit(group []*placement) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(group[0].ctx), commitTimeout)
	defer cancel()
	s.commitIn(ctx, group)
}

func (s *Service) commitIn(ctx context.Context, group []*placement) {
	unknown, err := s.insert(ctx, group)
	if err != nil && !unknown && len(group) > 1 {
		for _, p := range group {
			s.commitIn(ctx, []*placement{p})
		}
		return
	}
	for _, p := range group {
		if err != nil {
			p.err = err
		}
		close(p.done)
	}
}

// insert writes a group's orders and events in one transaction, the events inserted with the
// COMMIT; unknown reports that the error, if any, left the COMMIT's outcome unknown.
func (s *Service) insert(ctx context.Context, group []*placement) (unknown bool, err error) {
	const q = `
INSERT INTO orders (customer_id, pizza, qty, region, status, reject_reason, retry_after_seconds, idempotency_key)
VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, 0), NULLIF($8, ''))
ON CONFLICT (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING ` + columns
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{}) // the BEGIN goes out with the inserts: one round trip for both
	for _, p := range group {
		in := p.in
		b.Queue(q, in.CustomerID, in.Pizza, in.Qty, in.Region, p.status, p.reason, p.retryAfter, in.IdempotencyKey)
	}
	// An outbox transaction: its events are inserted with the COMMIT, and published straight
	// after it.
	ctx, tx, br := outbox.Begin(ctx, s.pool, b)
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	events, err := readGroup(br, group)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := s.outbox.Write(ctx, tx, events...); err != nil {
		return false, err
	}
	err = tx.Commit(ctx)
	return errors.Is(err, outbox.ErrCommitUnknown), err
}

// readGroup reads the BEGIN and the inserts of a group's batch, and returns the events to write.
func readGroup(br pgx.BatchResults, group []*placement) ([]outbox.Event, error) {
	if _, err := br.Exec(); err != nil { // BEGIN
		return nil, err
	}
	events := make([]outbox.Event, 0, len(group))
	for _, p := range group {
		rows, err := br.Query()
		if err != nil {
			return nil, err
		}
		p.o, p.err = pgx.CollectExactlyOneRow(rows, scanOrder)
		if errors.Is(p.err, pgx.ErrNoRows) {
			continue // the key's first order is returned instead
		}
		if p.err != nil {
			return nil, p.err
		}
		ev, err := placedEvent(p.o)
		if err != nil {
			return nil, err
		}
		outbox.Stamp(p.ctx, &ev) // each event continues its own request's trace
		events = append(events, ev)
	}
	return events, nil
}

// placedEvent announces a recorded order: order.placed, or order.rejected with its reason.
func placedEvent(o Order) (outbox.Event, error) {
	typ := lifecycle.OrderPlaced
	if o.Status == lifecycle.Rejected {
		typ = lifecycle.OrderRejected
	}
	return outbox.NewEvent(typ, o.ID, Producer, lifecycle.Payload{
		OrderDetails: lifecycle.OrderDetails{
			CustomerID: o.CustomerID, Pizza: o.Pizza, Qty: o.Qty, Region: o.Region, PlacedAt: o.PlacedAt,
		},
		RejectReason:      o.RejectReason,
		RetryAfterSeconds: o.RetryAfterSeconds,
	})
}
