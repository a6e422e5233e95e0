package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// relayWorker is the River worker for relayArgs: it publishes the events of each relay job that
// a write left to the relay (all of them, without DirectPublish; otherwise those the committing
// process could not publish within DirectGrace).
type relayWorker struct {
	river.WorkerDefaults[relayArgs]
	o *Outbox
}

// Work publishes the job's events in their order, their confirms pipelined, and succeeds when
// the broker confirmed every one. A failure retries the whole job: the events already confirmed
// are published again, and the consumers' inboxes skip them.
func (w *relayWorker) Work(ctx context.Context, job *river.Job[relayArgs]) error {
	o := w.o
	raws := job.Args.Events
	if len(raws) == 0 {
		raws = []json.RawMessage{job.EncodedArgs} // written before events were batched
	}
	return errors.Join(o.publish(ctx, raws, job.Attempt)...)
}

// publish publishes events in their order, their confirms pipelined, and returns the failures
// (an unroutable event whose key is optional is no failure).
func (o *Outbox) publish(ctx context.Context, raws []json.RawMessage, attempt int) []error {
	heads := make([]eventHead, len(raws))
	for i, raw := range raws {
		// Only what routing and tracing need, without copying the payload.
		if err := json.Unmarshal(raw, &heads[i]); err != nil {
			return []error{fmt.Errorf("outbox: undecodable event in relay job: %w", err)}
		}
	}
	return o.publishHeads(ctx, raws, heads, attempt)
}

// publishHeads is publish with each event's head already known (the dispatcher wrote them).
func (o *Outbox) publishHeads(ctx context.Context, raws []json.RawMessage, heads []eventHead, attempt int) []error {
	msgs := make([]message, len(raws))
	spans := make([]trace.Span, len(raws))
	for i, raw := range raws {
		h := heads[i]
		ev := Event{ID: h.ID, Type: h.Type, OrderID: h.OrderID, TraceParent: h.TraceParent}
		var sctx context.Context
		sctx, spans[i] = StartSpan(ctx, "publish", ev, trace.SpanKindProducer)
		msgs[i] = message{Key: h.Type, MsgID: h.ID.String(), Body: raw, Headers: traceHeaders(sctx)}
	}
	var failed []error
	for i, err := range o.cfg.Publisher.publishAll(ctx, msgs) {
		h := heads[i]
		if errors.Is(err, errUnroutable) {
			o.cfg.Metrics.incUnroutable(o.cfg.Service, h.Type)
			if o.cfg.Optional(h.Type) {
				err = nil
			} else {
				o.cfg.Logger.WarnContext(ctx, "event unroutable, will retry: no queue is bound for it yet",
					"event_id", h.ID, "type", h.Type, "order_id", h.OrderID, "attempt", attempt)
			}
		} else if err == nil {
			o.cfg.Metrics.incPublished(o.cfg.Service, h.Type)
			if o.cfg.afterConfirm != nil {
				o.cfg.afterConfirm(Event{ID: h.ID, Type: h.Type, OrderID: h.OrderID, TraceParent: h.TraceParent})
			}
		}
		if err != nil {
			spans[i].SetStatus(codes.Error, err.Error())
			failed = append(failed, &publishError{id: h.ID, typ: h.Type, err: err})
		}
		spans[i].End()
	}
	return failed
}

// publishError is one event's failed publish.
type publishError struct {
	id  uuid.UUID
	typ string
	err error
}

func (e *publishError) Error() string { return e.typ + " " + e.id.String() + ": " + e.err.Error() }
func (e *publishError) Unwrap() error { return e.err }

// NextRetry retries a failed relay soon and then at most every ten seconds: the broker is
// expected back, and the event must not wait River's default hours-long backoff.
func (w *relayWorker) NextRetry(job *river.Job[relayArgs]) time.Time {
	d := 100 * time.Millisecond << min(job.Attempt, 7)
	return time.Now().Add(min(d, 10*time.Second))
}

var _ rivertype.JobArgs = relayArgs{}
