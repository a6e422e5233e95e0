package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Direct publishing (Config.DirectPublish): a Tx hands the relay jobs it wrote to this process's
// dispatchers once it has committed (Tx.Commit). A dispatcher publishes everything
// handed over since its last round in one round (corked, confirms pipelined), then marks the
// confirmed jobs completed, as the relay would have. The jobs were written due a grace period
// later, and a round gives up half a grace before its first job falls due, so the relay never
// fetches one a dispatcher is still working on; it fetches any the dispatcher did not finish
// (the process died, the broker was slow or down, the completion was lost):
// nothing is lost, at worst published twice, which the consumers' inboxes absorb. This takes
// the relay's fetch (a NOTIFY, a River fetch transaction, and their latency) off every hop.

// directJob is a committed relay job, with its events and the time the relay may take it.
type directJob struct {
	id     int64
	events []json.RawMessage
	heads  []eventHead // the events' routing and tracing fields, not to decode them again
	due    time.Time
}

// maxDispatchers bounds the rounds in flight: while they wait for confirms, commits gather for
// the next round.
const maxDispatchers = 4

// dispatch hands committed jobs to a dispatcher; it never blocks.
func (o *Outbox) dispatch(jobs []directJob) {
	if len(jobs) == 0 {
		return
	}
	o.dmu.Lock()
	o.dqueue = append(o.dqueue, jobs...)
	start := o.dispatchers < maxDispatchers
	if start {
		o.dispatchers++
		o.dwg.Add(1)
	}
	o.dmu.Unlock()
	if start {
		go o.dispatchLoop()
	}
}

func (o *Outbox) dispatchLoop() {
	defer o.dwg.Done()
	for {
		o.dmu.Lock()
		jobs := o.dqueue
		o.dqueue = nil
		if len(jobs) == 0 {
			o.dispatchers--
			o.dmu.Unlock()
			return
		}
		o.dmu.Unlock()
		o.publishDirect(jobs)
	}
}

// publishDirect publishes one round and marks its confirmed jobs completed. A round ends well
// before its first job falls due (half the grace before), so the relay never publishes a job a
// dispatcher is still publishing; jobs that waited that long (the broker was slow or away, the
// rounds queued) are left to the relay. So the queue holds at most a grace's worth of commits.
func (o *Outbox) publishDirect(jobs []directJob) {
	margin := o.cfg.DirectGrace / 2
	now := time.Now()
	var deadline time.Time
	kept := jobs[:0]
	for _, j := range jobs {
		if j.due.Sub(now) > margin {
			kept = append(kept, j)
			if deadline.IsZero() || j.due.Before(deadline) {
				deadline = j.due
			}
		}
	}
	jobs = kept
	if len(jobs) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-margin))
	defer cancel()
	var raws []json.RawMessage
	var heads []eventHead
	for _, j := range jobs {
		raws = append(raws, j.events...)
		heads = append(heads, j.heads...)
	}
	failed := map[uuid.UUID]bool{} // event ids
	if errs := o.publishHeads(ctx, raws, heads, 0); len(errs) > 0 {
		for _, err := range errs {
			var pe *publishError
			if errors.As(err, &pe) {
				failed[pe.id] = true
			} else {
				o.cfg.Logger.WarnContext(ctx, "direct publish failed; the relay will publish after the grace", "err", err)
				return
			}
		}
	}
	done := make([]int64, 0, len(jobs))
	for _, j := range jobs {
		ok := true
		for _, h := range j.heads {
			if failed[h.ID] {
				ok = false
				break
			}
		}
		if ok {
			done = append(done, j.id)
		}
	}
	if len(failed) > 0 {
		o.cfg.Logger.WarnContext(ctx, "direct publish incomplete; the relay will publish the rest after the grace",
			"failed", len(failed), "jobs", len(jobs)-len(done))
	}
	if len(done) == 0 {
		return
	}
	o.markDone(done)
}

// completeEvery gathers the completions of dispatch rounds into one UPDATE: they are off every
// event's path, and a round per commit would otherwise cost a statement per commit.
const completeEvery = 10 * time.Millisecond

// markDone queues jobs to be marked completed; a completer runs while there are any.
func (o *Outbox) markDone(ids []int64) {
	o.dmu.Lock()
	o.doneQ = append(o.doneQ, ids...)
	start := !o.completing
	if start {
		o.completing = true
		o.dwg.Add(1)
	}
	o.dmu.Unlock()
	if start {
		go o.completeLoop()
	}
}

func (o *Outbox) completeLoop() {
	defer o.dwg.Done()
	for {
		time.Sleep(completeEvery) // let the rounds of the next few milliseconds join
		o.dmu.Lock()
		ids := o.doneQ
		o.doneQ = nil
		if len(ids) == 0 {
			o.completing = false
			o.dmu.Unlock()
			return
		}
		o.dmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), o.cfg.DirectGrace)
		// As the relay's completion would: attempt 1, finalized now. Only a job still scheduled:
		// one the relay has taken (the grace passed) is the relay's to finish.
		_, err := o.pool.Exec(ctx, `
UPDATE river_job SET state = 'completed', attempt = 1, attempted_at = now(), finalized_at = now()
WHERE id = ANY($1) AND state = 'scheduled'`, customPlan, ids)
		cancel()
		if err != nil {
			o.cfg.Logger.Warn("marking directly published events done failed; the relay will publish them again",
				"jobs", len(ids), "err", err)
		}
	}
}
