package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
)

// Services that run in the same process as their caller (`pizza serve`, everything in one
// process) are called without a socket: the client hands the request straight to the service's
// HTTP handler, the very handler its server runs, so validation, errors, metrics and the
// caller's breaker behave exactly as over the network. What is saved is the loopback: the
// writes, reads and wake-ups of two connections, and net/http's parsing on both sides. One
// difference remains: the handler runs on the caller's goroutine, so a handler that ignores its
// context holds its caller until it returns (ours all pass the context down).

var local sync.Map // host:port -> *localHandler

type localHandler struct{ http.Handler } // a pointer, comparable whatever the handler is

// ServeLocally makes clients in this process call h for requests to base (a service URL as
// callers are configured with, or several, comma-separated) instead of dialling it. The
// returned function undoes it; call it when the service stops.
func ServeLocally(base string, h http.Handler) (stop func()) {
	entry := &localHandler{h}
	var hosts []string
	for _, b := range strings.Split(base, ",") {
		u, err := url.Parse(strings.TrimSpace(b))
		if err != nil || u.Host == "" {
			continue
		}
		local.Store(u.Host, entry)
		hosts = append(hosts, u.Host)
	}
	return func() {
		for _, host := range hosts {
			local.CompareAndDelete(host, entry)
		}
	}
}

// localTransport serves requests for local services in process and sends the rest on.
type localTransport struct{ next http.RoundTripper }

func (t localTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := local.Load(req.URL.Host)
	if !ok {
		return t.next.RoundTrip(req)
	}
	return serveLocal(h.(*localHandler), req)
}

func serveLocal(h http.Handler, req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close() // a RoundTripper closes the body, whatever happens
	}
	in := req.Clone(req.Context()) // as a server would see it
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "127.0.0.1:0"
	if in.Body == nil {
		in.Body = http.NoBody
	}
	w := &localResponse{header: http.Header{}}
	defer func() {
		if v := recover(); v != nil { // over a socket, the connection would break (and the process live on)
			if v != http.ErrAbortHandler { // net/http's way to abort a response quietly
				slog.Error("in-process handler panicked", "method", req.Method, "path", req.URL.Path,
					"panic", v, "stack", string(debug.Stack()))
			}
			resp, err = nil, fmt.Errorf("in-process %s %s: handler panicked: %v", req.Method, req.URL.Path, v)
		}
	}()
	h.ServeHTTP(w, in)
	if err := req.Context().Err(); err != nil {
		return nil, err // as over a socket: a cancelled request gets no answer
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(&w.body),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// localResponse is the http.ResponseWriter of an in-process call.
type localResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *localResponse) Header() http.Header { return w.header }

func (w *localResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *localResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
