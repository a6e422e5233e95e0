package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/1588-pizza/pizza/graph/model"
)

// One order is one trace: from the placeOrder request through every service, the outbox relays
// and consumers, to the BFF's push of the myPage row. Not parallel: it installs the process's
// tracer provider.
func TestOneOrderIsOneTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	_, base := wholeSystem(t, nil)
	registerStore(t, base, "강남점", "강남구")
	customer := mint(t, model.RoleCustomer, "1")
	ws := connect(t, base, customer)
	ws.subscribe(t, "s", myPageSubscription, map[string]any{"c": "1"})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	body := `{"query": "mutation { placeOrder(input: {customerId: \"1\", pizza: \"p\", qty: 1, region: \"강남구\"}) { id } }"}`
	req, err := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+customer)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp := doGQL(t, req)
	require.Empty(t, resp.Errors)
	ws.rowsUntil(t, "RECEIVED")

	want := []string{
		"POST /graphql", "POST /orders", "GET /availability", // the BFF, order and store servers
		"publish order.placed", "consume order.placed",
		"publish store.order_received", "consume store.order_received",
		"publish customercenter.mypage_updated", "push customercenter.mypage_updated",
	}
	var names []string
	require.Eventually(t, func() bool {
		names = names[:0]
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() == traceID {
				names = append(names, s.Name())
			}
		}
		for _, w := range want {
			if !slices.Contains(names, w) {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond)
	require.Subset(t, names, want)
}
