package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/1588-pizza/pizza/errs"
	"github.com/stretchr/testify/require"
)

// A service served locally answers its callers in this process without a socket (nothing listens
// at its address here), exactly as over the network: answers, error answers, a cancelled call,
// a panicking handler; once stopped, calls go to the network again.
func TestServeLocallySkipsTheSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	cancelled := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", Handle(slog.New(slog.DiscardHandler), func(w http.ResponseWriter, r *http.Request) error {
		var in map[string]string
		if err := ReadJSON(w, r, &in); err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, in)
		return nil
	}))
	mux.HandleFunc("GET /missing", Handle(slog.New(slog.DiscardHandler), func(http.ResponseWriter, *http.Request) error {
		return errs.Errorf(errs.NotFound, "no such thing")
	}))
	mux.HandleFunc("GET /slow", func(_ http.ResponseWriter, r *http.Request) {
		close(cancelled)
		<-r.Context().Done()
	})
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	stop := ServeLocally(base, mux)
	c := NewClient(base)
	ctx := context.Background()

	var out map[string]string
	require.NoError(t, c.Do(ctx, http.MethodPost, "/echo", map[string]string{"a": "b"}, &out))
	require.Equal(t, map[string]string{"a": "b"}, out)

	var apiErr *errs.Error
	require.ErrorAs(t, c.Do(ctx, http.MethodGet, "/missing", nil, nil), &apiErr)
	require.Equal(t, errs.NotFound, apiErr.Code)

	cctx, cancel := context.WithCancel(ctx)
	go func() { <-cancelled; cancel() }()
	require.ErrorIs(t, c.Do(cctx, http.MethodGet, "/slow", nil, nil), context.Canceled)

	err = c.Do(ctx, http.MethodGet, "/panic", nil, nil)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, errs.Unavailable, apiErr.Code, "a panic is the service failing, not the caller")

	stop()
	err = c.Do(ctx, http.MethodPost, "/echo", map[string]string{"a": "b"}, &out)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, errs.Unavailable, apiErr.Code, "over the network again, where nothing listens")
	require.False(t, errors.Is(err, context.Canceled))
}
