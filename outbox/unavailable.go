package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/1588-pizza/pizza/db"
)

// A consumer transaction can fail for two kinds of reasons. Its handler can fail on a healthy
// database (a bug, an event it cannot apply): trying again a few times costs little, and a
// delivery that keeps failing is dead-lettered after MaxAttempts so that it blocks nothing. Or
// the failure is not the events' at all: the database is unreachable, restarting or refusing
// connections (db.Unavailable, and ErrCommitUnknown, a connection lost during the COMMIT), or the
// transaction lost a deadlock or serialization conflict (db.Conflict). Those are tried again for
// as long as they last, with a backoff doubling up to MaxRetryBackoff, the deliveries kept
// unacked and never dead-lettered, and count for no attempts. While the database is unavailable
// the consumer reports it (Err), so a service's readiness goes false; the first success ends the
// outage and wakes every delivery waiting on it at once.

// unavailable reports whether err found the consumer's database unavailable.
func unavailable(err error) bool {
	return errors.Is(err, ErrCommitUnknown) || db.Unavailable(err)
}

// outage tracks the consumer's database being unavailable.
type outage struct {
	active  atomic.Bool // waiting > 0: a success must end the outage
	metrics *Metrics    // pizza_consumer_database_unavailable{queue}, set under mu
	queue   string

	mu        sync.Mutex
	waiting   int           // retry loops waiting for the database
	err       error         // the last error that found it unavailable
	since     time.Time     // when the first of them began waiting
	recovered chan struct{} // closed by the next success
}

// enter records that a retry loop waits for the database after err; leave ends its wait.
func (o *outage) enter(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.waiting == 0 {
		o.since = time.Now()
	}
	o.waiting++
	o.err = err
	o.active.Store(true)
	o.metrics.setUnavailable(o.queue, true)
}

// failed records a later error of a loop that waits already.
func (o *outage) failed(err error) {
	o.mu.Lock()
	o.err = err
	o.mu.Unlock()
}

func (o *outage) leave() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waiting--
	if o.waiting == 0 {
		o.err = nil
		o.active.Store(false)
		o.metrics.setUnavailable(o.queue, false)
	}
}

// succeeded wakes the loops waiting for the database: it answers again.
func (o *outage) succeeded() {
	if !o.active.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.recovered != nil {
		close(o.recovered)
		o.recovered = nil
	}
}

// wake is closed by the next success.
func (o *outage) wake() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.recovered == nil {
		o.recovered = make(chan struct{})
	}
	return o.recovered
}

func (o *outage) current() error {
	if !o.active.Load() {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.waiting == 0 {
		return nil
	}
	return fmt.Errorf("database unavailable for %s: %w", time.Since(o.since).Round(time.Second), o.err)
}

// Err reports why the consumer cannot apply events now: non-nil while deliveries wait for its
// database to come back (they stay unacked meanwhile). A service's readiness includes it.
func (c *Consumer) Err() error { return c.outage.current() }

// persist runs try, one attempt at applying a transaction, until it succeeds or fails for a
// reason of the events' own, which it returns, waiting between attempts that failed on an
// unavailable database or a conflict for as long as those last. stopped reports that it gave up
// because the consumer is stopping: the deliveries stay unacked, for the broker to redeliver.
// tags are the deliveries at stake: while they wait, the acker does not hold later acks behind
// them.
func (c *Consumer) persist(ctx context.Context, stopping <-chan struct{}, acks *acker, tags []uint64, log *slog.Logger, try func() error) (stopped bool, err error) {
	q := c.cfg.Queue.Name
	wait := c.cfg.RetryBackoff
	waiting := false // entered the outage
	defer func() {
		if waiting {
			c.outage.leave()
		}
	}()
	for n := 1; ; n++ {
		err := try()
		if err == nil {
			c.outage.succeeded()
			if waiting {
				log.InfoContext(ctx, "database available again", "tries", n)
			}
			return false, nil
		}
		if ctx.Err() != nil {
			return true, err // the handlers' context ends only when stopping
		}
		var reason string
		switch {
		case unavailable(err):
			reason = "unavailable"
			if !waiting {
				waiting = true
				c.outage.enter(err)
			} else {
				c.outage.failed(err)
			}
		case db.Conflict(err):
			reason = "conflict"
		default:
			return false, err
		}
		if n == 1 {
			for _, t := range tags {
				_ = acks.retrying(t)
			}
		}
		c.cfg.Metrics.incWaited(q, reason)
		level := slog.LevelWarn
		if n > 1 && reason == "unavailable" {
			level = slog.LevelDebug // one warning per delivery, not one per try
		}
		log.Log(ctx, level, "database "+reason+", trying again (the deliveries are kept)",
			"tries", n, "err", err, "retry_in", wait, "deliveries", len(tags))
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-c.outage.wake(): // another transaction got through: the database is back
			timer.Stop()
		case <-stopping:
			timer.Stop()
			return true, err
		}
		wait = min(2*wait, c.cfg.MaxRetryBackoff)
	}
}
