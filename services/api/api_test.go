package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// WriteError shows a database that could not be reached, or a transaction that lost a conflict,
// as the retryable UNAVAILABLE (503), not INTERNAL; other errors without a code stay INTERNAL,
// and an *Error keeps its own code.
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
		code   Code
	}{
		{"connection refused", refused, http.StatusServiceUnavailable, Unavailable},
		{"wrapped connection refused", fmt.Errorf("place order: %w", refused), http.StatusServiceUnavailable, Unavailable},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, http.StatusServiceUnavailable, Unavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, http.StatusServiceUnavailable, Unavailable},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, http.StatusServiceUnavailable, Unavailable},
		{"constraint violation", &pgconn.PgError{Code: "23505"}, http.StatusInternalServerError, Internal},
		{"plain error", errors.New("boom"), http.StatusInternalServerError, Internal},
		{"coded error", Errorf(Conflict, "cooked already"), http.StatusConflict, Conflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			WriteError(rec, httptest.NewRequest(http.MethodPost, "/orders", nil), slog.New(slog.DiscardHandler), c.err)
			require.Equal(t, c.status, rec.Code)
			var body struct{ Error *Error }
			require.NoError(t, json.NewDecoder(rec.Body).Decode(&body))
			require.NotNil(t, body.Error)
			require.Equal(t, c.code, body.Error.Code)
			require.NotContains(t, body.Error.Message, addr, "no internal detail shown")
			require.Equal(t, c.code, CodeOf(c.err))
		})
	}
}
