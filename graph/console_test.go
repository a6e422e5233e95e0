package graph

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The BFF serves the console at / and GraphiQL at /playground (package web), and tells the
// console about the development sign-in only outside production.
func TestServesTheConsole(t *testing.T) {
	for _, production := range []bool{false, true} {
		h := newTestHandler(t, ServerConfig{Production: production})
		for _, path := range []string{"/", "/signin", "/customer", "/playground"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			require.Equal(t, http.StatusOK, rec.Code, path)
			require.Contains(t, rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
			body, _ := io.ReadAll(rec.Body)
			offered := path != "/playground" && !production
			require.Equal(t, offered, strings.Contains(string(body), `name="pizza-dev-signin"`),
				"%s, production %v: the dev sign-in is offered only in development", path, production)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/no-such-page", nil))
		require.Equal(t, http.StatusNotFound, rec.Code)
	}
}
