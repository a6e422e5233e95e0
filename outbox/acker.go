package outbox

import (
	"errors"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker settles the deliveries of one channel with as few frames as it can. A channel numbers its
// deliveries 1, 2, 3...; one ack with multiple=true settles every outstanding delivery up to its
// tag. So a settled delivery is told to the broker once every delivery before it is settled too:
// one frame acks a whole batch, or both workers' batches when they end close together, where
// one frame per delivery cost a system call in pizza and a frame for the broker each.
//
// Two things must not wait behind a delivery that is slow to settle, because the broker stops
// delivering once the prefetch window is full of unacked deliveries: a delivery that is
// retrying (its backoff lasts up to seconds) or being dead-lettered (a confirmed publish), and
// half the window in held acks. In either case what is held back is acked one delivery at a
// time.
//
// Frames are sent under the lock: a multiple ack overtaken by a later one would name a tag the
// broker no longer knows, which closes the channel.
type acker struct {
	ch      *amqp.Channel
	maxHeld int

	mu        sync.Mutex
	low       uint64              // every tag <= low is settled and told
	state     map[uint64]tagState // the tags above low that are settled or retrying
	held      map[uint64]struct{} // the tags of state that are held: what acking one by one goes over
	nRetrying int                 // how many of state are retrying
}

type tagState uint8

const (
	tagHeld     tagState = iota + 1 // settled, not told yet
	tagTold                         // settled and told: acked alone, or rejected
	tagRetrying                     // not settled; its handler is retrying
)

// newAcker acks on ch, a channel with the given prefetch window.
func newAcker(ch *amqp.Channel, prefetch int) *acker {
	return &acker{ch: ch, maxHeld: max(1, prefetch/2), state: map[uint64]tagState{}, held: map[uint64]struct{}{}}
}

// ack settles tags (committed, or moved to the DLQ). The error is that of a frame it sent: the
// connection is gone, and the broker will redeliver what it had not been told.
func (a *acker) ack(tags ...uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range tags {
		a.set(t, tagHeld)
	}
	return a.flush()
}

// reject rejects tag without requeue (the queue dead-letters it) and settles it.
func (a *acker) reject(tag uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ch.Reject(tag, false); err != nil {
		return err
	}
	a.set(tag, tagTold)
	return a.flush()
}

// retrying marks tag as slow to settle (its handler retries, or it is being dead-lettered): the
// deliveries it holds back are acked now, one by one, and so are later ones until it settles.
func (a *acker) retrying(tag uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(tag, tagRetrying)
	return a.flush()
}

func (a *acker) set(tag uint64, s tagState) {
	if tag <= a.low {
		return
	}
	switch a.state[tag] {
	case tagHeld:
		delete(a.held, tag)
	case tagRetrying:
		a.nRetrying--
	}
	switch s {
	case tagHeld:
		a.held[tag] = struct{}{}
	case tagRetrying:
		a.nRetrying++
	}
	a.state[tag] = s
}

// flush moves low over the settled tags that follow it, acks up to the last one held among
// them in one frame, and acks what is still held one by one when waiting is not safe.
func (a *acker) flush() error {
	var last uint64
	for {
		s, ok := a.state[a.low+1]
		if !ok || s == tagRetrying {
			break
		}
		a.low++
		delete(a.state, a.low)
		if s == tagHeld {
			delete(a.held, a.low)
			last = a.low
		}
	}
	var errs []error
	if last > 0 {
		errs = append(errs, a.ch.Ack(last, true))
	}
	// Only the held tags are visited: while a delivery retries, the told ones after it pile up
	// in state until it settles.
	if len(a.held) > 0 && (a.nRetrying > 0 || len(a.held) >= a.maxHeld) {
		for t := range a.held {
			errs = append(errs, a.ch.Ack(t, false))
			a.state[t] = tagTold
		}
		clear(a.held)
	}
	return errors.Join(errs...)
}
