package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// startTracing installs W3C trace-context propagation always, and, when OTEL_EXPORTER_OTLP_ENDPOINT
// names a collector, a tracer provider exporting spans there over OTLP/HTTP. Off by default.
func startTracing(ctx context.Context, cfg config) (shutdown func(), err error) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if cfg.Common.TraceEndpoint == "" {
		return func() {}, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Common.TraceEndpoint))
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(sdkresource.NewSchemaless(semconv.ServiceName(cfg.Common.TraceService))),
	)
	otel.SetTracerProvider(tp)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}, nil
}

// tracing reports whether spans are recorded: a tracer provider is installed (by startTracing,
// or by a test). Without one, the HTTP layers' tracing is left out: it would cost a few percent
// of the CPU to propagate nothing.
func tracing() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}
