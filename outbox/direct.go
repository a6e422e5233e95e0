package outbox

import (
	"context"
	"encoding/json"
)

// Direct publishing (Config.DirectPublish): a transaction written through a Scope hands its relay
// jobs to this process's dispatchers once it has committed. A dispatcher publishes everything
// handed over since its last round in one round (corked, confirms pipelined), then marks the
// confirmed jobs completed, as the relay would have. The jobs were written due a grace period
// later, so the relay never fetches one that the dispatcher is still working on, and fetches any
// the dispatcher did not finish (the process died, the broker was down, the update was lost):
// nothing is lost, at worst published twice, which the consumers' inboxes absorb. This takes
// the relay's fetch (a NOTIFY, a River fetch transaction, and their latency) off every hop.

// directJob is a committed relay job, with its events.
type directJob struct {
	id     int64
	events []json.RawMessage
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
	}
	o.dmu.Unlock()
	if start {
		go o.dispatchLoop()
	}
}

func (o *Outbox) dispatchLoop() {
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

// publishDirect publishes one round and marks its confirmed jobs completed. It gives up at the
// grace: by then the relay may have the jobs.
func (o *Outbox) publishDirect(jobs []directJob) {
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.DirectGrace)
	defer cancel()
	var raws []json.RawMessage
	for _, j := range jobs {
		raws = append(raws, j.events...)
	}
	failed := map[string]bool{} // event ids
	if errs := o.publish(ctx, raws, 0); len(errs) > 0 {
		for _, err := range errs {
			var pe *publishError
			if asPublishError(err, &pe) {
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
		for _, raw := range j.events {
			var h eventHead
			if len(failed) > 0 && (json.Unmarshal(raw, &h) != nil || failed[h.ID.String()]) {
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
	// As the relay's completion would: attempt 1, finalized now. Only a job still scheduled: one
	// the relay has taken (the grace passed) is the relay's to finish.
	if _, err := o.pool.Exec(ctx, `
UPDATE river_job SET state = 'completed', attempt = 1, attempted_at = now(), finalized_at = now()
WHERE id = ANY($1) AND state = 'scheduled'`, customPlan, done); err != nil {
		o.cfg.Logger.WarnContext(ctx, "marking directly published events done failed; the relay will publish them again",
			"jobs", len(done), "err", err)
	}
}
