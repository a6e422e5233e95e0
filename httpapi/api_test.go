package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/1588-pizza/pizza/errs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// writeError shows a database that could not be reached, or a transaction that lost a conflict,
// as the retryable UNAVAILABLE (503), not INTERNAL; other errors without a code stay INTERNAL,
// and an *errs.Error keeps its own code.
func TestWriteErrorMapsTransientDatabaseErrorsToUnavailable(t *testing.T) {
	t.Parallel()
	// A real connect error: a port where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, refused := pgx.Connect(context.Background(), "postgres://postgres@"+addr+"/pizza_order?sslmode=disable")
	var connectErr *pgconn.ConnectError
	require.ErrorAs(t, refused, &connectErr)

	cases := []struct {
		name   string
		err    error
		status int
		code   errs.Code
	}{
		{"connection refused", refused, http.StatusServiceUnavailable, errs.Unavailable},
		{"wrapped connection refused", fmt.Errorf("place order: %w", refused), http.StatusServiceUnavailable, errs.Unavailable},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, http.StatusServiceUnavailable, errs.Unavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, http.StatusServiceUnavailable, errs.Unavailable},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, http.StatusServiceUnavailable, errs.Unavailable},
		{"constraint violation", &pgconn.PgError{Code: "23505"}, http.StatusInternalServerError, errs.Internal},
		{"plain error", errors.New("boom"), http.StatusInternalServerError, errs.Internal},
		{"coded error", errs.Errorf(errs.Conflict, "cooked already"), http.StatusConflict, errs.Conflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			writeError(rec, httptest.NewRequest(http.MethodPost, "/orders", nil), slog.New(slog.DiscardHandler), c.err)
			require.Equal(t, c.status, rec.Code)
			var body struct{ Error *errs.Error }
			require.NoError(t, json.NewDecoder(rec.Body).Decode(&body))
			require.NotNil(t, body.Error)
			require.Equal(t, c.code, body.Error.Code)
			require.NotContains(t, body.Error.Message, addr, "no internal detail shown")
			require.Equal(t, c.code, errs.CodeOf(c.err))
		})
	}
}

// JSON reads the body into its input (strictly: a bad body is BAD_USER_INPUT and the call never
// runs), reads nothing for NoBody, writes the answer with its status, and an error as writeError.
func TestJSONDecodesCallsAndWrites(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	type in struct {
		Name string `json:"name"`
	}
	echo := JSON(logger, http.StatusCreated, func(r *http.Request, in in) (in, error) {
		if in.Name == "taken" {
			return in, errs.Errorf(errs.Conflict, "taken")
		}
		return in, nil
	})
	get := JSON(logger, http.StatusOK, func(r *http.Request, _ NoBody) (string, error) { return r.URL.Query().Get("q"), nil })
	cases := []struct {
		name    string
		handler http.HandlerFunc
		target  string
		body    string
		status  int
		answer  string
	}{
		{"body read and answered", echo, "/", `{"name":"a"}`, http.StatusCreated, `{"name":"a"}`},
		{"unknown field", echo, "/", `{"nom":"a"}`, http.StatusBadRequest, `"BAD_USER_INPUT"`},
		{"no body where one is due", echo, "/", ``, http.StatusBadRequest, `"BAD_USER_INPUT"`},
		{"the call's error", echo, "/", `{"name":"taken"}`, http.StatusConflict, `"CONFLICT"`},
		{"no body read for NoBody", get, "/?q=x", `not json`, http.StatusOK, `"x"`},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		c.handler(w, httptest.NewRequest(http.MethodPost, c.target, strings.NewReader(c.body)))
		require.Equal(t, c.status, w.Code, c.name)
		require.Contains(t, w.Body.String(), c.answer, c.name)
	}
}
