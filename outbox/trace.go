package outbox

import (
	"context"
	"sync/atomic"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace context travels with each event, so that one order is one trace from placeOrder to the
// subscription push: Write stamps the writer's context into the event (and so into its outbox
// row), the relay sends it as the AMQP traceparent header, and the consumer continues it in the
// handler's context, which stamps the events the handler writes. With no tracer provider
// installed (the default), spans are not recorded and this costs next to nothing.

var (
	tracer     = otel.Tracer("github.com/1588-pizza/pizza/outbox")
	propagator = propagation.TraceContext{}
)

// tracing is whether spans are made at all: with no tracer provider installed, making them (and
// stamping and sending trace context) is work for nothing, a few percent of the process's CPU.
var tracing atomic.Bool

// Trace turns the outbox's tracing on or off; `pizza serve` turns it on when a tracer provider is
// installed. Off by default.
func Trace(on bool) { tracing.Store(on) }

// headerTraceParent carries an event's W3C trace context on an AMQP message.
const headerTraceParent = "traceparent"

// Stamp records ctx's trace context in ev, unless ev has one already; Write stamps the events it
// is given with its own ctx.
func Stamp(ctx context.Context, ev *Event) { stamp(ctx, ev) }

func stamp(ctx context.Context, ev *Event) {
	if ev.TraceParent != "" || !tracing.Load() {
		return
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	ev.TraceParent = c[headerTraceParent]
}

// contextOf returns ctx carrying the event's trace context, if it has one.
func contextOf(ctx context.Context, ev Event) context.Context {
	if ev.TraceParent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{headerTraceParent: ev.TraceParent})
}

// StartSpan starts a span named for what happens to ev, in ev's trace.
func StartSpan(ctx context.Context, what string, ev Event, kind trace.SpanKind) (context.Context, trace.Span) {
	if !tracing.Load() {
		return ctx, noop.Span{}
	}
	return tracer.Start(contextOf(ctx, ev), what+" "+ev.Type, trace.WithSpanKind(kind),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.message.id", ev.ID.String()),
			attribute.String("pizza.order_id", ev.OrderID),
		))
}

func traceHeaders(ctx context.Context) amqp.Table {
	if !tracing.Load() {
		return nil
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	if c[headerTraceParent] == "" {
		return nil
	}
	return amqp.Table{headerTraceParent: c[headerTraceParent]}
}

type spansKey struct{}

// tracedAll runs fn with a consumer span open for each event; EventContext finds them.
func (c *Consumer) tracedAll(ctx context.Context, events []Event, fn func(ctx context.Context) error) error {
	if !tracing.Load() {
		return fn(ctx)
	}
	spans := make(map[uuid.UUID]context.Context, len(events))
	ended := make([]trace.Span, 0, len(events))
	for _, ev := range events {
		sctx, span := StartSpan(ctx, "consume", ev, trace.SpanKindConsumer)
		span.SetAttributes(attribute.String("messaging.destination.name", c.cfg.Queue.Name))
		spans[ev.ID] = sctx
		ended = append(ended, span)
	}
	err := fn(context.WithValue(ctx, spansKey{}, spans))
	for _, span := range ended {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return err
}

// EventContext is ctx continuing ev's trace, for what a batch handler does on ev's account (the
// events it writes for it, above all).
func EventContext(ctx context.Context, ev Event) context.Context {
	if spans, _ := ctx.Value(spansKey{}).(map[uuid.UUID]context.Context); spans != nil {
		if sctx, ok := spans[ev.ID]; ok {
			return context.WithValue(sctx, spansKey{}, spans)
		}
	}
	return contextOf(ctx, ev)
}
