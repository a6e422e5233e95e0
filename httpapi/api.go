// Package httpapi holds the conventions of the services' internal HTTP/JSON APIs: how an
// errs.Error becomes a status and an {"error": {...}} body (and back, in the client), how
// handlers read and write JSON, and the pooled client callers use.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
)

func status(code errs.Code) int {
	switch code {
	case errs.BadUserInput:
		return http.StatusBadRequest
	case errs.Unauthenticated:
		return http.StatusUnauthorized
	case errs.Forbidden:
		return http.StatusForbidden
	case errs.NotFound:
		return http.StatusNotFound
	case errs.Conflict:
		return http.StatusConflict
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// maxBody bounds request bodies of the internal APIs.
const maxBody = 64 << 10

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes err as {"error": {...}} with its status. An error without a code is logged
// with its detail and shown only as UNAVAILABLE (503) when the service's database could not be
// reached or the transaction lost a conflict (db.Transient: the same request may succeed
// shortly), else as INTERNAL.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	var e *errs.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the caller went away; nobody reads the answer
		}
		if db.Transient(err) {
			logger.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
			e = &errs.Error{Code: errs.Unavailable, Message: "the service's database is unavailable or busy; retry shortly"}
		} else {
			logger.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
			e = &errs.Error{Code: errs.Internal, Message: "internal error"}
		}
	}
	WriteJSON(w, status(e.Code), struct {
		Error *errs.Error `json:"error"`
	}{e})
}

// ReadJSON decodes the request body into v strictly: JSON only, no unknown fields, one value,
// at most maxBody bytes. Failures are BAD_USER_INPUT.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errs.Errorf(errs.BadUserInput, "content type must be application/json, not %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return errs.Errorf(errs.BadUserInput, "body is larger than %d bytes", maxBody)
		case errors.As(err, &typeErr):
			return errs.Invalid(typeErr.Field, "must be a %s", typeErr.Type)
		case errors.Is(err, io.EOF):
			return errs.Errorf(errs.BadUserInput, "body is empty; a JSON object is expected")
		default:
			return errs.Errorf(errs.BadUserInput, "body is not valid JSON: %s", err)
		}
	}
	if dec.More() {
		return errs.Errorf(errs.BadUserInput, "body holds more than one JSON value")
	}
	return nil
}

// Handle adapts a handler that returns an error to http.HandlerFunc.
func Handle(logger *slog.Logger, h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, logger, err)
		}
	}
}

// NoBody is the input of a JSON handler whose request has no body.
type NoBody struct{}

// JSON serves a decode-call-write endpoint: the request's JSON body is read into an In (strictly,
// with ReadJSON; nothing is read when In is NoBody), call answers, and its answer is written as
// JSON with status, or its error as writeError writes it.
func JSON[In, Out any](logger *slog.Logger, status int, call func(r *http.Request, in In) (Out, error)) http.HandlerFunc {
	return Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
		var in In
		if _, none := any(in).(NoBody); !none {
			if err := ReadJSON(w, r, &in); err != nil {
				return err
			}
		}
		out, err := call(r, in)
		if err != nil {
			return err
		}
		WriteJSON(w, status, out)
		return nil
	})
}

// Client calls one service's internal API over pooled keep-alive connections. Given several
// replicas' addresses it spreads calls over them in turn and, when one cannot be reached, tries
// the next: a replica that is down costs a failed dial, not a failed request.
type Client struct {
	bases []string
	next  atomic.Uint32
	http  *http.Client
}

var tracing atomic.Bool

// TraceCalls makes the clients made from now on carry the caller's trace context to the
// service. Without a tracer provider that costs a few percent of the CPU for nothing.
func TraceCalls(on bool) { tracing.Store(on) }

// NewClient returns a client for the service at base (http://host:port), or at any of several
// comma-separated bases.
func NewClient(base string) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	var rt http.RoundTripper = localTransport{next: tr}
	if tracing.Load() { // otelhttp carries the caller's trace to the service
		rt = otelhttp.NewTransport(rt)
	}
	c := &Client{http: &http.Client{Transport: rt}}
	for _, b := range strings.Split(base, ",") {
		if b = strings.TrimRight(strings.TrimSpace(b), "/"); b != "" {
			c.bases = append(c.bases, b)
		}
	}
	return c
}

// Do sends in (if not nil) as JSON and decodes a 2xx answer into out (if not nil). An error
// answer comes back as its *errs.Error; a service that cannot be reached is UNAVAILABLE. A POST is
// sent elsewhere only when the connection to a replica could not even be made; other methods are
// idempotent, and are sent again to the next replica when one fails without answering.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out, method != http.MethodPost)
}

// DoIdempotent is Do for a call that the service treats as idempotent (a POST carrying an
// idempotency key, a cancel, a cook): when a replica fails without answering (it closed a kept-
// alive connection as it shut down, say), the call is sent again, to the next replica.
func (c *Client) DoIdempotent(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out, true)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any, idempotent bool) error {
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return err
		}
	}
	var (
		resp *http.Response
		err  error
	)
	start := int(c.next.Add(1))
	for i := range c.bases {
		base := c.bases[(start+i)%len(c.bases)]
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if idempotent {
			// net/http retries a request with this header on a fresh connection when a kept-alive
			// one turns out closed; the services do not read it.
			req.Header["Idempotency-Key"] = []string{"internal"}
		}
		resp, err = c.http.Do(req)
		var opErr *net.OpError
		dialFailed := errors.As(err, &opErr) && opErr.Op == "dial"
		if err == nil || ctx.Err() != nil || (!idempotent && !dialFailed) {
			break // a POST is tried elsewhere only when nothing was sent
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &errs.Error{Code: errs.Unavailable, Message: "a backing service is unreachable; retry shortly"}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error *errs.Error `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == nil {
			return &errs.Error{Code: errs.Unavailable, Message: "a backing service failed; retry shortly"}
		}
		return e.Error
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// PathID reads the path value name as a positive integer id; anything else is NOT_FOUND, as no
// such object can exist.
func PathID(r *http.Request, name string) (int64, error) {
	id, err := input.ParseID(r.PathValue(name))
	if err != nil {
		return 0, errs.Errorf(errs.NotFound, "no %s %q", name, r.PathValue(name))
	}
	return id, nil
}
