package graph

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
)

// graphql-js v16's getIntrospectionQuery(), byte for byte: what Apollo's tooling,
// graphql-codegen and get-graphql-schema send (nesting ofType 9 deep: 15 levels in all), and
// the variant GraphiQL sends ({descriptions, specifiedByUrl, directiveIsRepeatable,
// schemaDescription, inputValueDeprecation: true}). Made with
//
//	npm i graphql@16 && node -e "process.stdout.write(require('graphql').getIntrospectionQuery(OPTIONS))"
//
//go:embed testdata/introspection-graphql-js-16.graphql
var graphqlJSIntrospection string

//go:embed testdata/introspection-graphql-js-16-graphiql.graphql
var graphiqlIntrospection string

// introspect posts query anonymously (as the tools do before the user has a token) and returns
// the answer's status and body.
func introspect(t *testing.T, h http.Handler, query string) (int, map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "operationName": "IntrospectionQuery"})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json, application/json;q=0.9")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "%s", rec.Body.String())
	return rec.Code, out
}

// In development the standard introspection queries pass every limit and answer the whole
// schema: GraphiQL's docs pane, Apollo, graphql-codegen and get-graphql-schema work. Before, the
// depth limit (10) refused both ("operation is 15 levels deep").
func TestStandardIntrospectionQueriesPass(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, ServerConfig{})
	for name, q := range map[string]string{"graphql-js": graphqlJSIntrospection, "GraphiQL": graphiqlIntrospection} {
		status, out := introspect(t, h, q)
		require.Equal(t, http.StatusOK, status, "%s: %v", name, out["errors"])
		require.Nil(t, out["errors"], name)
		schema := out["data"].(map[string]any)["__schema"].(map[string]any)
		types := map[string]map[string]any{}
		for _, ty := range schema["types"].([]any) {
			ty := ty.(map[string]any)
			types[ty["name"].(string)] = ty
		}
		require.Equal(t, "Query", schema["queryType"].(map[string]any)["name"], name)
		require.Contains(t, types, "MyPageOrder", name)

		// The deepest wrapper the schema has ([SeenVersion!] and friends) is named at the end
		// of its ofType chain.
		fields := map[string]any{}
		for _, f := range types["MyPageOrder"]["fields"].([]any) {
			fields[f.(map[string]any)["name"].(string)] = f.(map[string]any)["type"]
		}
		require.Equal(t, map[string]any{"kind": "NON_NULL", "name": nil,
			"ofType": map[string]any{"kind": "SCALAR", "name": "ID", "ofType": nil}}, fields["id"], name)
		if name == "GraphiQL" {
			require.Equal(t, "https://datatracker.ietf.org/doc/html/rfc3339", types["Time"]["specifiedByURL"])
		}
	}
}

// Introspection is measured against its own bounds, and everything else against the usual ones:
// abusive shapes of either kind are refused before anything runs. Before, all but the second and
// the ofType chains were answered (gqlparser's rule allows two nested member lists below types); the first's answer grows with the square of the schema's size.
func TestIntrospectionHasItsOwnBounds(t *testing.T) {
	t.Parallel()
	nest := func(n int, open, leaf string) string {
		return strings.Repeat(open+" { ", n) + leaf + strings.Repeat(" }", n)
	}
	const lists = "introspection nests lists of types and their members (types, fields, inputFields, interfaces, possibleTypes)"
	cases := []struct{ name, query, message string }{
		{"types' fields' types' fields", `{ __schema { types { fields { type { fields { name } } } } } }`,
			lists + " 3 deep; at most 2 are allowed"},
		{"types' fields' types' fields' types' fields (gqlparser's own rule refuses it first)",
			`{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }`, "Maximum introspection depth exceeded"},
		{"the same behind fragments", `{ __schema { types { ...F } } } fragment F on __Type { fields { type { ...G } } } fragment G on __Type { ofType { fields { name } } }`,
			lists + " 3 deep; at most 2 are allowed"},
		{"possibleTypes of interfaces", `{ __schema { types { interfaces { possibleTypes { name } } } } }`,
			lists + " 3 deep; at most 2 are allowed"},
		{"ofType 25 deep", `{ __type(name: "Query") { ` + nest(25, "ofType", "name") + ` } }`,
			"introspection is 27 levels deep; at most 20 are allowed"},
		{"ofType 500 deep", `{ __type(name: "Query") { ` + nest(500, "ofType", "name") + ` } }`,
			"nested over 32 deep"},
	}
	h := newTestHandler(t, ServerConfig{})
	for _, c := range cases {
		resp := postQuery(t, h, c.query)
		require.NotEmpty(t, resp.Errors, c.name)
		require.Equal(t, string(errs.BadUserInput), resp.code(), "%s: %+v", c.name, resp.Errors)
		require.Contains(t, resp.Errors[0].Message, c.message, c.name)
	}

	// The operation's own depth limit holds beside introspection, which does not count toward it.
	h = newTestHandler(t, ServerConfig{MaxDepth: 2})
	resp := postQueryAs(t, h, testToken(t, model.RoleAdmin, ""), `{ __schema { queryType { name } } orderTimeline(orderId: "1") { consumed { service } } }`)
	require.Equal(t, string(errs.BadUserInput), resp.code(), "%+v", resp.Errors)
	require.Equal(t, "operation is 3 levels deep; at most 2 are allowed", resp.Errors[0].Message)
	status, out := introspect(t, h, graphqlJSIntrospection)
	require.Equal(t, http.StatusOK, status, "%v", out["errors"])
}
