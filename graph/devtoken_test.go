package graph

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph/model"
)

// The development sign-in signs a token for any role and id a token may carry, and refuses,
// with the services' error shape and a stable code, anything else: other methods, other media
// types (what a cross-site form sends), and ids no token may carry.
func TestDevTokens(t *testing.T) {
	t.Parallel()
	auth, err := NewAuth("a secret of sixteen bytes or more")
	require.NoError(t, err)
	srv := httptest.NewServer(DevTokens(auth, time.Hour, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	send := func(method, contentType, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
		require.NoError(t, err)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "a token is never cached")
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp, out
	}

	for _, c := range []struct {
		role, id string
		check    func(*Claims)
	}{
		{"CUSTOMER", "7", func(c *Claims) { require.Equal(t, "7", c.CustomerID) }},
		{"CUSTOMER", "고객 7", func(c *Claims) { require.Equal(t, "고객 7", c.CustomerID) }},
		{"MASTER", "3", func(c *Claims) { require.Equal(t, "3", c.StoreID) }},
		{"AGENT", "", func(c *Claims) { require.Empty(t, c.Subject) }},
		{"AGENT", "상담원 1", func(c *Claims) { require.Equal(t, "상담원 1", c.Subject) }},
		{"ADMIN", "ops", func(c *Claims) { require.Equal(t, "ops", c.Subject) }},
	} {
		body, err := json.Marshal(map[string]string{"role": c.role, "id": c.id})
		require.NoError(t, err)
		resp, out := send(http.MethodPost, "application/json; charset=utf-8", string(body))
		require.Equal(t, http.StatusOK, resp.StatusCode, "%v: %v", c, out)
		require.Equal(t, c.role, out["role"])
		require.Equal(t, c.id, out["id"])
		claims, err := auth.Verify(out["token"].(string))
		require.NoError(t, err)
		require.Equal(t, model.Role(c.role), claims.Role)
		c.check(claims)
		expires, err := time.Parse(time.RFC3339, out["expiresAt"].(string))
		require.NoError(t, err)
		require.Equal(t, claims.ExpiresAt.Unix(), expires.Unix())
		require.WithinDuration(t, time.Now().Add(time.Hour), expires, time.Minute)
	}

	for _, c := range []struct {
		method, contentType, body string
		status                    int
		field                     string
	}{
		{http.MethodGet, "", "", http.StatusMethodNotAllowed, ""},
		{http.MethodPut, "application/json", `{"role": "ADMIN"}`, http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "", `{"role": "ADMIN"}`, http.StatusUnsupportedMediaType, ""},
		{http.MethodPost, "text/plain", `{"role": "ADMIN"}`, http.StatusUnsupportedMediaType, ""},
		{http.MethodPost, "application/x-www-form-urlencoded", `role=ADMIN`, http.StatusUnsupportedMediaType, ""},
		{http.MethodPost, "application/json", `{"role": "ADMIN"`, http.StatusBadRequest, ""},
		{http.MethodPost, "application/json", `{"role": "ADMIN", "ttl": "1000h"}`, http.StatusBadRequest, ""},
		{http.MethodPost, "application/json", `{"role": "admin"}`, http.StatusBadRequest, "role"},
		{http.MethodPost, "application/json", `{"role": "ROOT"}`, http.StatusBadRequest, "role"},
		{http.MethodPost, "application/json", `{"id": "1"}`, http.StatusBadRequest, "role"},
		{http.MethodPost, "application/json", `{"role": "CUSTOMER"}`, http.StatusBadRequest, "id"},
		{http.MethodPost, "application/json", `{"role": "CUSTOMER", "id": "2 "}`, http.StatusBadRequest, "id"},
		{http.MethodPost, "application/json", `{"role": "CUSTOMER", "id": "` + strings.Repeat("x", 65) + `"}`, http.StatusBadRequest, "id"},
		{http.MethodPost, "application/json", `{"role": "MASTER", "id": "03"}`, http.StatusBadRequest, "id"},
		{http.MethodPost, "application/json", `{"role": "MASTER", "id": "x"}`, http.StatusBadRequest, "id"},
		{http.MethodPost, "application/json", `{"role": "MASTER"}`, http.StatusBadRequest, "id"},
		{http.MethodPost, "application/json", `{"role": "AGENT", "id": "a\u200b"}`, http.StatusBadRequest, "id"},
	} {
		resp, out := send(c.method, c.contentType, c.body)
		what := c.method + " " + c.contentType + " " + c.body
		require.Equal(t, c.status, resp.StatusCode, "%s: %v", what, out)
		e, ok := out["error"].(map[string]any)
		require.True(t, ok, "%s: %v", what, out)
		require.Equal(t, "BAD_USER_INPUT", e["code"], what)
		require.NotEmpty(t, e["message"], what)
		if c.field != "" {
			require.Equal(t, c.field, e["field"], what)
		}
		require.NotContains(t, out, "token", what)
		if c.status == http.StatusMethodNotAllowed {
			require.Equal(t, "POST", resp.Header.Get("Allow"))
		}
	}
}
