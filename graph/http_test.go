package graph

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
)

// rawResponse is an HTTP answer as a client sees it.
type rawResponse struct {
	status int
	header http.Header
	body   map[string]any
}

func (r rawResponse) code() string {
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	ext, _ := errs[0].(map[string]any)["extensions"].(map[string]any)
	c, _ := ext["code"].(string)
	return c
}

func (r rawResponse) message() string {
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	m, _ := errs[0].(map[string]any)["message"].(string)
	return m
}

// do sends req to h and decodes the answer, whatever its status.
func do(t *testing.T, h http.Handler, req *http.Request) rawResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := rawResponse{status: rec.Code, header: rec.Header()}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out.body), "%d %s", rec.Code, rec.Body.String())
	return out
}

// post is a JSON POST of body with the given Accept (none if empty) and Authorization headers.
func post(body, accept, authorization string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return req
}

func queryBody(t *testing.T, query string, variables map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"query": query, "variables": variables})
	require.NoError(t, err)
	return string(b)
}

// mintAt mints a token for role as if it were now+shift, valid for ttl from then.
func mintAt(t *testing.T, shift, ttl time.Duration, role model.Role, id string) string {
	t.Helper()
	a, err := NewAuth(testSecret)
	require.NoError(t, err)
	a.now = func() time.Time { return time.Now().Add(shift) }
	tok, err := a.Mint(role, id, ttl)
	require.NoError(t, err)
	return tok
}

const registerStoreMutation = `mutation { registerStore(input: {name: "n", region: "r", open: true}) { id } }`

// Every way of not being authenticated is answered alike: extensions.code UNAUTHENTICATED, the
// reason as the message, no data, WWW-Authenticate: Bearer, and the status GraphQL over HTTP
// wants for the media type the client accepts: 200 for application/json (whose non-200 bodies
// clients do not read), 401 for application/graphql-response+json. Before, a missing token was
// 200 with a data entry, a bad one 401 in application/json whatever the client accepted (Apollo
// Client showed only "Received status code 401"), and a token expired under the 5 s leeway a
// third message, "a valid bearer token is required".
func TestAuthenticationFailuresHaveOneShape(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{})
	customer := testToken(t, model.RoleCustomer, "1")
	forged := customer[:strings.LastIndex(customer, ".")+1] + "AAAA"
	cases := []struct{ name, authorization, reason string }{
		{"no token", "", reasonNoToken},
		{"another scheme", "Basic Zm9vOmJhcg==", reasonNotBearer},
		{"a scheme without a token", "Bearer ", reasonNotBearer},
		{"a token without a scheme", customer, reasonNotBearer},
		{"a forged signature", "Bearer " + forged, reasonInvalid + "token signature is invalid: signature is invalid"},
		{"not a token", "Bearer nonsense", reasonInvalid + "token is malformed: token contains an invalid number of segments"},
		{"expired a minute ago", "Bearer " + mintAt(t, -2*time.Minute, time.Minute, model.RoleCustomer, "1"), reasonExpired},
	}
	for _, c := range cases {
		for accept, status := range map[string]int{
			"":                                  http.StatusOK, // application/json
			"*/*":                               http.StatusOK,
			"application/json":                  http.StatusOK,
			"application/graphql-response+json": http.StatusUnauthorized,
			"application/graphql-response+json, application/json;q=0.9": http.StatusUnauthorized, // Apollo Client 4
		} {
			what := c.name + ", Accept: " + accept
			resp := do(t, h, post(queryBody(t, registerStoreMutation, nil), accept, c.authorization))
			require.Equal(t, status, resp.status, "%s: %v", what, resp.body)
			require.Equal(t, string(errs.Unauthenticated), resp.code(), what)
			require.Equal(t, c.reason, resp.message(), what)
			require.NotContains(t, resp.body, "data", what)
			require.True(t, strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Bearer"), what)
			wantType := mediaJSON
			if status == http.StatusUnauthorized {
				wantType = mediaGraphQLResponse
			}
			require.Equal(t, wantType+"; charset=utf-8", resp.header.Get("Content-Type"), what)
		}
	}

	// Any spelling of the scheme authenticates (RFC 7235), and so does a token expired within
	// the leeway: registerStore then refuses the customer for its role, not for its token.
	for _, authorization := range []string{"Bearer " + customer, "bearer " + customer, "BEARER  " + customer,
		"Bearer " + mintAt(t, -61*time.Second, time.Minute, model.RoleCustomer, "1")} {
		resp := do(t, h, post(queryBody(t, registerStoreMutation, nil), mediaGraphQLResponse, authorization))
		require.Equal(t, http.StatusOK, resp.status, "%s: %v", authorization, resp.body)
		require.Equal(t, string(errs.Forbidden), resp.code(), "%s: %v", authorization, resp.body)
		require.Contains(t, resp.body, "data", "an executed operation has its data entry, null or not")
	}

	// Introspection and __typename need no token (tools fetch the schema before anyone signs in).
	resp := do(t, h, post(queryBody(t, `{ __typename __type(name: "Query") { name } }`, nil), mediaGraphQLResponse, ""))
	require.Equal(t, http.StatusOK, resp.status, "%v", resp.body)
	require.Nil(t, resp.body["errors"])
}

// A websocket refused at connection_init closes with 4403 (graphql-transport-ws), its reason the
// message HTTP gives for the same token. Before, every case closed with "Forbidden".
func TestWebsocketAuthenticationFailuresGiveTheReason(t *testing.T) {
	t.Parallel()
	f := newWSFixture(t, time.Minute)
	for payload, reason := range map[string]string{
		`{}`:                                   reasonNoToken,
		`{"Authorization": "Basic Zm9v"}`:      reasonNotBearer,
		`{"Authorization": "Bearer nonsense"}`: reasonInvalid + "token is malformed: token contains an invalid number of segments",
		`{"Authorization": "Bearer ` + mintAt(t, -2*time.Minute, time.Minute, model.RoleCustomer, "1") + `"}`: reasonExpired,
	} {
		ws := f.dial(t)
		ws.send(wsMessage{Type: "connection_init", Payload: json.RawMessage(payload)})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := ws.conn.Read(ctx)
		cancel()
		var ce websocket.CloseError
		require.True(t, errors.As(err, &ce), "%s: %v", payload, err)
		require.Equal(t, websocket.StatusCode(closeForbidden), ce.Code, payload)
		require.Equal(t, reason, ce.Reason, payload)
	}
	// The scheme is case-insensitive here too.
	ws := f.dial(t)
	ws.send(wsMessage{Type: "connection_init", Payload: json.RawMessage(`{"authorization": "bearer ` + testToken(t, model.RoleCustomer, "1") + `"}`)})
	require.Equal(t, "connection_ack", ws.read().Type)
}

// Request errors (the document does not parse or validate, a limit refuses it, the operation is
// not found, the variables do not coerce) have no data entry, and the status GraphQL over HTTP
// recommends for the media type: 200 for application/json, 400 for
// application/graphql-response+json. Before, application/json got 422 for most of them, and
// application/graphql-response+json 200 with "data": null for the limits.
func TestRequestErrorStatusFollowsTheMediaType(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{})
	admin := "Bearer " + testToken(t, model.RoleAdmin, "")
	cases := []struct {
		name, body string
	}{
		{"parse failure", `{"query": "{"}`},
		{"validation failure", `{"query": "{ nope }"}`},
		{"no operation", `{"query": ""}`},
		{"unknown operation name", `{"query": "query A { __typename }", "operationName": "B"}`},
		{"variable coercion failure", `{"query": "query($id: ID!) { order(id: $id) { id } }", "variables": {"id": null}}`},
		{"a depth, alias or size limit", queryBody(t, "{"+strings.Repeat(" a: __typename", 40)+" }", nil)},
		{"a document too large to validate", queryBody(t, "{"+strings.Repeat(" __typename", 40)+" }", nil)},
		{"a subscription over POST", `{"query": "subscription { myPage(customerId: \"1\") { id } }"}`},
	}
	for _, c := range cases {
		for accept, status := range map[string]int{"": 200, "application/json": 200, mediaGraphQLResponse: 400} {
			what := c.name + ", Accept: " + accept
			resp := do(t, h, post(c.body, accept, admin))
			require.Equal(t, status, resp.status, "%s: %v", what, resp.body)
			require.NotContains(t, resp.body, "data", what)
			require.Equal(t, string(errs.BadUserInput), resp.code(), what)
		}
	}
}

// What is not a GraphQL request at all is 400 whatever the media type; a mutation over GET is
// 405 (a MUST of the spec); an Accept allowing neither JSON type is 406.
func TestMalformedRequestsAreRefusedWithTheirStatus(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{})
	admin := "Bearer " + testToken(t, model.RoleAdmin, "")
	for _, body := range []string{``, `NONSENSE`, `{"query":`, `[{"query": "{ __typename }"}]`, `null`,
		`{"qeury": "{ __typename }"}`, `{"query": null}`, `{"query": 7}`, `{"query": {"a": 1}}`,
		`{"query": "{ __typename }", "variables": [7]}`, `{"query": "{ __typename }", "variables": "{}"}`,
		`{"query": "{ __typename }", "operationName": 0}`, `{"query": "{ __typename }", "extensions": false}`,
		`{"query": "{ __typename }"} {"query": "{ __typename }"}`,
	} {
		for _, accept := range []string{"", mediaGraphQLResponse} {
			resp := do(t, h, post(body, accept, admin))
			require.Equal(t, http.StatusBadRequest, resp.status, "%s: %v", body, resp.body)
			require.NotContains(t, resp.body, "data", body)
			require.Equal(t, string(errs.BadUserInput), resp.code(), body)
		}
	}
	// null parameters are absent ones.
	resp := do(t, h, post(`{"query": "{ __typename }", "operationName": null, "variables": null, "extensions": null}`, "", ""))
	require.Equal(t, http.StatusOK, resp.status, "%v", resp.body)
	require.Equal(t, map[string]any{"__typename": "Query"}, resp.body["data"])

	get := func(query, accept string) rawResponse {
		req := httptest.NewRequest(http.MethodGet, "/graphql?"+query, nil)
		req.Header.Set("Authorization", admin)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		return do(t, h, req)
	}
	for _, accept := range []string{"", mediaGraphQLResponse} {
		resp = get("query="+url.QueryEscape(registerStoreMutation), accept)
		require.Equal(t, http.StatusMethodNotAllowed, resp.status, "%v", resp.body)
		require.Equal(t, http.MethodPost, resp.header.Get("Allow"))
		require.Equal(t, string(errs.BadUserInput), resp.code())
		require.NotContains(t, resp.body, "data")

		resp = get("variables=%7B%7D", accept)
		require.Equal(t, http.StatusBadRequest, resp.status, "no query: %v", resp.body)
		resp = get("query="+url.QueryEscape("{ __typename }")+"&variables=%5B%5D", accept)
		require.Equal(t, http.StatusBadRequest, resp.status, "variables not an object: %v", resp.body)
		resp = get("query="+url.QueryEscape("query($s: ID!) { storeOrders(storeId: $s) { id } }")+"&variables=%7B%7D", accept)
		require.Equal(t, map[string]int{"": 200, mediaGraphQLResponse: 400}[accept], resp.status, "coercion: %v", resp.body)
	}

	resp = do(t, h, post(`{"query": "{ __typename }"}`, "text/html", ""))
	require.Equal(t, http.StatusNotAcceptable, resp.status)
	require.Equal(t, string(errs.BadUserInput), resp.code())
}

// The response's media type is the one the Accept header prefers (RFC 9110 quality values).
func TestResponseMediaTypeNegotiation(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]string{
		"":                                  mediaJSON,
		"*/*":                               mediaJSON,
		"application/*":                     mediaJSON,
		"text/html, */*;q=0.8":              mediaJSON,
		"application/json":                  mediaJSON,
		"application/graphql-response+json": mediaGraphQLResponse,
		"application/graphql-response+json, application/json;q=0.9":                                        mediaGraphQLResponse,
		"application/graphql-response+json; charset=utf-8, application/json; charset=utf-8":                mediaGraphQLResponse,
		"application/json, application/graphql-response+json":                                              mediaJSON,
		"application/json;q=0.5, application/graphql-response+json":                                        mediaGraphQLResponse,
		"application/graphql-response+json, application/graphql+json, application/json, text/event-stream": mediaGraphQLResponse, // urql
		"application/graphql-response+json, */*":                                                           mediaGraphQLResponse,
		"application/graphql-response+json;q=0.5, */*":                                                     mediaJSON,
		"application/*, application/json;q=0":                                                              mediaGraphQLResponse,
		"text/html":                                                                                        "",
		"application/json;q=0, text/html":                                                                  "",
	} {
		req := httptest.NewRequest(http.MethodPost, "/graphql", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		require.Equal(t, want, responseType(req), "Accept: %s", accept)
	}
}
