package graph

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newTestHandler is the BFF's handler with no backends: enough for everything refused before a
// resolver runs.
func newTestHandler(t *testing.T, cfg ServerConfig) http.Handler {
	t.Helper()
	auth, err := NewAuth("a secret of sixteen bytes or more")
	require.NoError(t, err)
	hub := NewHub(8, time.Second, slog.New(slog.DiscardHandler))
	t.Cleanup(hub.Close)
	return NewHandler(cfg, auth, Backends{}, hub)
}

type testResponse struct {
	status int
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (r testResponse) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

func serve(t *testing.T, h http.Handler, req *http.Request) testResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := testResponse{status: rec.Code}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "%s", rec.Body.String())
	return out
}

// postQuery sends query anonymously, as an attacker would.
func postQuery(t *testing.T, h http.Handler, query string) testResponse {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	return serve(t, h, req)
}

// doublingFragments spreads each of n fragments twice in the next: 2^n fields once expanded,
// in a document of n lines.
func doublingFragments(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "query { ...F%d }", n)
	b.WriteString(" fragment F0 on Query { __typename }")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, " fragment F%d on Query { ...F%d ...F%d }", i, i-1, i-1)
	}
	return b.String()
}

// In production, the check for introspection looks into each fragment once: a document whose
// expansion has 2^40 fields is refused for its size at once. Before, that check walked the
// expansion, and this test never finished.
func TestIntrospectionCheckIsLinearInTheDocument(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{Production: true})
	resp := postQuery(t, h, doublingFragments(40))
	require.Equal(t, codeBadUserInput, resp.code(), "%+v", resp.Errors)
	require.Contains(t, resp.Errors[0].Message, "fields once fragments are expanded")

	// Introspection is still found behind fragments, however they nest.
	resp = postQuery(t, h, `query { ...A } fragment A on Query { ...B ...B } fragment B on Query { ...{ __schema { queryType { name } } } }`)
	require.Equal(t, codeBadUserInput, resp.code(), "%+v", resp.Errors)
	require.Equal(t, "introspection is disabled", resp.Errors[0].Message)
}
