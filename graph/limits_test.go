package graph

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/introspection"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
)

// newTestHandler is the BFF's handler with no backends: enough for everything refused before a
// resolver runs.
func newTestHandler(t *testing.T, cfg ServerConfig) http.Handler {
	t.Helper()
	auth, err := NewAuth(testSecret)
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
	return postQueryAs(t, h, "", query)
}

// postQueryAs sends query with token (none if empty).
func postQueryAs(t *testing.T, h http.Handler, token, query string) testResponse {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return serve(t, h, req)
}

// testSecret signs the tokens of newTestHandler's server.
const testSecret = "a secret of sixteen bytes or more"

// testToken mints a token newTestHandler's server accepts.
func testToken(t *testing.T, role model.Role, id string) string {
	t.Helper()
	a, err := NewAuth(testSecret)
	require.NoError(t, err)
	tok, err := a.Mint(role, id, time.Hour)
	require.NoError(t, err)
	return tok
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
	require.Equal(t, string(errs.BadUserInput), resp.code(), "%+v", resp.Errors)
	require.Contains(t, resp.Errors[0].Message, "fields once fragments are expanded")

	// Introspection is still found behind fragments, however they nest.
	resp = postQuery(t, h, `query { ...A } fragment A on Query { ...B ...B } fragment B on Query { ...{ __schema { queryType { name } } } }`)
	require.Equal(t, string(errs.BadUserInput), resp.code(), "%+v", resp.Errors)
	require.Equal(t, "introspection is disabled", resp.Errors[0].Message)
}

// Documents whose validation costs more than their size are refused before any validation rule
// runs, in development and production alike, with a BAD_USER_INPUT naming the bound. On the old
// code each of these was validated: the first took over a second of CPU, and every conflict of
// the last was reported (250,000 errors).
func TestOversizedDocumentsAreRefusedBeforeValidation(t *testing.T) {
	t.Parallel()
	many := func(n int, f func(i int) string) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(f(i))
		}
		return b.String()
	}
	cases := []struct{ name, query, bound string }{
		{"4,900 __typename (54 KB)", "{" + strings.Repeat(" __typename", 4900) + "}", `named "__typename" in one selection set`},
		{"the same, with a comment to miss the cache", "# 12345\n{" + strings.Repeat(" __typename", 4900) + "}", `named "__typename"`},
		{"400 aliases of one name, conflicting", "{" + many(400, func(i int) string { return []string{" a:stores{id}", " a:order(id:1){id}"}[i%2] }) + "}", `named "a"`},
		{"300 fragments spread side by side", "{" + many(300, func(i int) string { return fmt.Sprintf(" ...F%d", i) }) + "}" +
			many(300, func(i int) string { return fmt.Sprintf(" fragment F%d on Query { __typename }", i) }), "fragments are spread in one selection set"},
		{"900 operations", many(900, func(i int) string { return fmt.Sprintf("query q%d { __typename } ", i) }), "over 500 selections"},
		{"a chain of 600 fragments", "{ ...F0 }" + many(600, func(i int) string { return fmt.Sprintf(" fragment F%d on Query { ...F%d }", i, i+1) }) +
			" fragment F600 on Query { __typename }", "over 500 selections"},
		{"200 operations spreading one fragment", many(200, func(i int) string { return fmt.Sprintf("query q%d { ...F } ", i) }) +
			"fragment F on Query {" + many(40, func(i int) string { return fmt.Sprintf(" t%d: __typename", i) }) + " }", "would visit over"},
		{"inline fragments 900 deep", "{" + strings.Repeat(" ...{", 900) + " __typename" + strings.Repeat(" }", 900) + "}", "nested over 32 deep"},
	}
	for _, production := range []bool{false, true} {
		h := newTestHandler(t, ServerConfig{Production: production})
		for _, c := range cases {
			resp := postQuery(t, h, c.query)
			require.Equal(t, http.StatusOK, resp.status, "%s: %+v", c.name, resp.Errors) // a request error, in application/json
			require.Len(t, resp.Errors, 1, c.name)
			require.Equal(t, string(errs.BadUserInput), resp.code(), c.name)
			require.Contains(t, resp.Errors[0].Message, "document too large to validate", c.name)
			require.Contains(t, resp.Errors[0].Message, c.bound, c.name)
		}
	}
}

// Within the bounds, validation reports at most 100 errors however many conflicts there are;
// ordinary documents, and graphql-js's full introspection query, are never refused for size.
func TestDocumentsWithinTheBoundsAreValidated(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{})
	var b strings.Builder
	b.WriteString("{")
	for i := range 25 {
		fmt.Fprintf(&b, " o%d: order(id: %d) { ", i, i)
		for j := range 16 {
			fmt.Fprintf(&b, " x: %s", []string{"id", "pizza"}[j%2])
		}
		b.WriteString(" }")
	}
	b.WriteString("}")
	resp := postQuery(t, h, b.String())          // 25 × 64 conflicts
	require.Equal(t, http.StatusOK, resp.status) // a request error, in application/json
	require.Equal(t, maxValidationErrors+1, len(resp.Errors))
	require.Contains(t, resp.Errors[0].Message, `Fields "x" conflict`)
	require.Equal(t, "too many validation errors; only the first 100 are shown", resp.Errors[maxValidationErrors].Message)

	for _, q := range []string{introspection.NewQuery(introspection.QueryOptions{OneOf: true}),
		`query A { stores { ...S } } query B { stores { ...S id } } fragment S on Store { id name ... on Store { region open } }`,
	} {
		resp = postQuery(t, h, q)
		for _, e := range resp.Errors {
			require.NotContains(t, e.Message, "too large", q)
		}
	}
	resp = postQuery(t, h, `{ __type(name: "Store") { fields { name } } }`)
	require.Empty(t, resp.Errors)
}

// In production a document naming __schema or __type anywhere is refused before validation.
func TestProductionRefusesIntrospectionBeforeValidation(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{Production: true})
	for _, q := range []string{
		`{ __schema { types { name } } }`,
		`query A { __typename } query B { ...F } fragment F on Query { __type(name: "Order") { name } }`,
		`{ stores { __type(name: "Order") { name } } }`, // invalid where it stands; refused all the same
	} {
		resp := postQuery(t, h, q)
		require.Equal(t, string(errs.BadUserInput), resp.code(), q)
		require.Equal(t, "introspection is disabled", resp.Errors[0].Message, q)
	}
}

// In production no validation error suggests anything; in development they do.
func TestProductionSuggestsNothing(t *testing.T) {
	t.Parallel()
	queries := []string{
		`{ storeOrders(storeId: "1", status: COOKE) { orderId } }`, // an enum value
		`{ stores { idd } }`,                         // a field
		`{ stores(regio: "x") { id } }`,              // an argument
		`{ ...F } fragment F on Quer { __typename }`, // a type
		`mutation { placeOrder(input: {customerId: "1", pizzza: "p", qty: 1, region: "r"}) { id } }`, // an input field
	}
	dev, prod := newTestHandler(t, ServerConfig{}), newTestHandler(t, ServerConfig{Production: true})
	for _, q := range queries {
		resp := postQuery(t, prod, q)
		require.NotEmpty(t, resp.Errors, q)
		for _, e := range resp.Errors {
			require.Equal(t, string(errs.BadUserInput), e.Extensions["code"], q)
			require.NotContains(t, e.Message, "Did you mean", q)
		}
		resp = postQuery(t, dev, q)
		var suggested bool
		for _, e := range resp.Errors {
			suggested = suggested || strings.Contains(e.Message, "Did you mean")
		}
		require.True(t, suggested, "development suggests: %s %+v", q, resp.Errors)
	}
}

// A body over the limit is refused with 413 whether or not it says its length up front.
func TestOversizedBodiesAreRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newTestHandler(t, ServerConfig{MaxBodyBytes: 1 << 10}))
	t.Cleanup(srv.Close)
	query := `{"query": "{ __typename }` + strings.Repeat(" ", 2<<10) + `"}`
	for _, chunked := range []bool{false, true} {
		req := chunkedPost(t, srv.URL, query, chunked)
		resp := send(t, req)
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.status, "chunked %v: %+v", chunked, resp.Errors)
		require.Equal(t, string(errs.BadUserInput), resp.code())
	}
	// Under the limit, chunked or not, it is answered.
	resp := send(t, chunkedPost(t, srv.URL, `{"query": "{ __typename }"}`, true))
	require.Equal(t, http.StatusOK, resp.status, "%+v", resp.Errors)
	require.Empty(t, resp.Errors)
}

// chunkedPost is a JSON POST of body, sent chunked (no Content-Length) or not.
func chunkedPost(t *testing.T, base, body string, chunked bool) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if chunked {
		req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
	}
	return req
}

// send does req against a real server and decodes the GraphQL response.
func send(t *testing.T, req *http.Request) testResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := testResponse{status: resp.StatusCode}
	require.NoError(t, json.Unmarshal(b, &out), "%s", b)
	return out
}

// A GET's query string is bounded like a POST's body: 414 past the limit.
func TestOversizedQueryStringsAreRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newTestHandler(t, ServerConfig{MaxBodyBytes: 1 << 10}))
	t.Cleanup(srv.Close)
	get := func(query string) testResponse {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/graphql?query="+url.QueryEscape(query), nil)
		require.NoError(t, err)
		return send(t, req)
	}
	resp := get("{ __typename }" + strings.Repeat(" ", 2<<10))
	require.Equal(t, http.StatusRequestURITooLong, resp.status, "%+v", resp.Errors)
	require.Equal(t, string(errs.BadUserInput), resp.code())

	resp = get("{ __typename }" + strings.Repeat(" ", 900))
	require.Equal(t, http.StatusOK, resp.status, "%+v", resp.Errors)
	require.Empty(t, resp.Errors)
}
