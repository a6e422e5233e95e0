// Placing an order: validate it, ask the store service whether its region has an open store
// (behind a circuit breaker, concurrent checks of one region sharing one call), and record it,
// ORDERED or REJECTED, through the group commit.

package order

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sony/gobreaker/v2"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
)

// Place records an order. With an open store in its region it is ORDERED and announced with
// order.placed; with none it is REJECTED / NO_OPEN_STORE; when the store service is slow, failing
// or shut out by the breaker it is REJECTED / STORE_BUSY with the seconds until the breaker lets
// calls through again. Rejections are announced with order.rejected. The same idempotency key
// from the same customer returns the first order.
func (s *Service) Place(ctx context.Context, in PlaceInput) (Order, error) {
	in, err := validate(in)
	if err != nil {
		return Order{}, err
	}
	if in.IdempotencyKey != "" {
		if o, err := s.byKey(ctx, in.CustomerID, in.IdempotencyKey); !errors.Is(err, pgx.ErrNoRows) {
			return o, err
		}
	}
	status, reason, retryAfter, err := s.check(ctx, in.Region)
	if err != nil {
		return Order{}, err
	}

	return s.write(ctx, &placement{in: in, status: status, reason: reason, retryAfter: retryAfter})
}

func validate(in PlaceInput) (PlaceInput, error) {
	var err error
	if in.CustomerID, err = input.Key("customerId", in.CustomerID); err != nil {
		return in, err
	}
	if in.Pizza, err = input.Text("pizza", in.Pizza, 100); err != nil {
		return in, err
	}
	if in.Region, err = input.Text("region", in.Region, 64); err != nil {
		return in, err
	}
	if in.Qty < 1 || in.Qty > MaxQty {
		return in, errs.Invalid("qty", "must be between 1 and %d", MaxQty)
	}
	if in.IdempotencyKey != "" {
		if in.IdempotencyKey, err = input.Text("idempotencyKey", in.IdempotencyKey, 128); err != nil {
			return in, err
		}
	}
	return in, nil
}

// check asks the store service through the breaker whether the region has an open store.
// Concurrent checks of one region share one call (see flights).
func (s *Service) check(ctx context.Context, region string) (lifecycle.Status, lifecycle.RejectReason, int, error) {
	open, err := s.checks.do(ctx, region, func(cctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(cctx, s.cfg.CheckTimeout)
		defer cancel()
		return s.breaker.Execute(func() (bool, error) {
			open, err := s.store.AnyOpen(cctx, region)
			if err != nil && context.Cause(cctx) == errCallerGone {
				return false, errCallerGone // its callers' own cancels or deadlines, not the store's fault
			}
			return open, err
		})
	})
	switch {
	case err == nil && open:
		return lifecycle.Ordered, "", 0, nil
	case err == nil:
		return lifecycle.Rejected, lifecycle.NoOpenStore, 0, nil
	case ctx.Err() != nil:
		return "", "", 0, errs.Errorf(errs.Unavailable, "request cancelled")
	}
	if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
		s.cfg.Logger.WarnContext(ctx, "store availability check failed", "region", region, "err", err)
	}
	return lifecycle.Rejected, lifecycle.StoreBusy, s.retryAfter(), nil
}

// flights coalesces availability checks: a check of a region that has one in flight waits for
// that call's answer instead of making its own (the answer is at most one call old, and the store
// re-checks when the order arrives anyway). A call ends early, cancelled with errCallerGone, only
// when every caller waiting on it has gone.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	waiters int
	cancel  context.CancelCauseFunc
	done    chan struct{}
	open    bool
	err     error
}

func (f *flights) do(ctx context.Context, key string, call func(context.Context) (bool, error)) (bool, error) {
	f.mu.Lock()
	fl := f.m[key]
	if fl == nil {
		cctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		fl = &flight{cancel: cancel, done: make(chan struct{})}
		if f.m == nil {
			f.m = make(map[string]*flight)
		}
		f.m[key] = fl
		go func() {
			open, err := call(cctx)
			f.mu.Lock()
			if f.m[key] == fl {
				delete(f.m, key)
			}
			f.mu.Unlock()
			fl.open, fl.err = open, err
			cancel(nil)
			close(fl.done)
		}()
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		return fl.open, fl.err
	case <-ctx.Done():
		f.mu.Lock()
		if fl.waiters--; fl.waiters == 0 {
			if f.m[key] == fl {
				delete(f.m, key) // whoever comes next asks afresh
			}
			fl.cancel(errCallerGone)
		}
		f.mu.Unlock()
		return false, ctx.Err()
	}
}

// errCallerGone marks a check abandoned by its caller; the breaker ignores it.
var errCallerGone = errors.New("the caller went away")

// retryAfter is the whole seconds until the breaker lets calls through again, at least 1.
func (s *Service) retryAfter() int {
	opened := s.openedAt.Load()
	if s.breaker.State() != gobreaker.StateOpen || opened == nil {
		return 1
	}
	left := min(s.cfg.OpenFor-time.Since(*opened), s.cfg.OpenFor)
	return max(1, int(math.Ceil(left.Seconds())))
}
