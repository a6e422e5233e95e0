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

// Keys are taken exactly as given or refused: never trimmed, never rewritten.
func TestKeysAreExactOrRefused(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"1", "c-1", "고객 7", "a b", strings.Repeat("피", maxKeyLen)} {
		got, err := Key("customerId", ok)
		require.NoError(t, err, "%q", ok)
		require.Equal(t, ok, got)
	}
	for _, bad := range []string{"", " ", "2 ", " 2", "2\t", "2\n", "\u00a02", "2\u3000", "2\x00", "2\u0085",
		"2\u200b", "\ufeff2", "2\u202e", "2\u2028x", "2\ue000", "2\xff", strings.Repeat("x", maxKeyLen+1)} {
		_, err := Key("customerId", bad)
		require.Error(t, err, "%q", bad)
		require.Equal(t, errs.BadUserInput, errs.CodeOf(err))
		require.Equal(t, "customerId", err.(*errs.Error).Field)
	}
}

// Text is trimmed, and refused when anything invisible or control-like remains in it.
func TestTextRefusesWhatCannotBeSeen(t *testing.T) {
	t.Parallel()
	got, err := Text("pizza", "  불고기 피자 ", 100)
	require.NoError(t, err)
	require.Equal(t, "불고기 피자", got)
	for _, bad := range []string{"", "   ", "p\x00", "p\x7fx", "p\u0085x", "p\u009fx", "p\u202ex", "p\u200dx",
		"p\u2029x", "p\ufeffx", "p\xc3x", strings.Repeat("x", 101)} {
		_, err := Text("pizza", bad, 100)
		require.Error(t, err, "%q", bad)
		require.Equal(t, errs.BadUserInput, errs.CodeOf(err))
	}
}

// Ids this system gives out are positive integers in one spelling only.
func TestParseIDTakesOneSpelling(t *testing.T) {
	t.Parallel()
	n, err := ParseID("42")
	require.NoError(t, err)
	require.EqualValues(t, 42, n)
	for _, bad := range []string{"", "0", "-1", "+1", "01", " 1", "1 ", "1e3", "abc", "\x00", "9223372036854775808"} {
		_, err := ParseID(bad)
		require.Error(t, err, "%q", bad)
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
