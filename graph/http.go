package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/1588-pizza/pizza/errs"
	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// httpTransport serves GraphQL over HTTP POST (application/json bodies) and GET (queries only),
// per GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/). It replaces
// gqlgen's GET and POST transports for the status codes and bodies of failed requests:
//
//   - The answer's media type is the one the Accept header prefers: application/json (also for
//     no Accept header, */* and application/*) or application/graphql-response+json; 406 when
//     it accepts neither.
//   - A request that is not a GraphQL request (unreadable JSON, no query, a query, operationName,
//     variables or extensions of the wrong type) is 400.
//   - A request error (the document does not parse or validate, a limit refuses it, the
//     operation is not found, its variables do not coerce) has no data entry, and is 200 with
//     application/json (the spec's SHOULD: a non-200 application/json body may come from any
//     proxy, and clients do not read it) or 400 with application/graphql-response+json.
//   - UNAUTHENTICATED is the same shape: 200 with application/json, 401 with
//     application/graphql-response+json; both carry WWW-Authenticate: Bearer.
//   - A mutation over GET is 405 with Allow: POST, whatever the media type (a MUST).
//   - An executed operation is 200, whatever its field errors.
type httpTransport struct{}

var _ graphql.Transport = httpTransport{}

// The media types of GraphQL responses.
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
)

// ruleMutationOverGET marks (in gqlerror.Error.Rule, which is not sent) the error refusing a
// mutation over GET, which is answered with 405.
const ruleMutationOverGET = "pizza:MutationOverGET"

func (httpTransport) Supports(r *http.Request) bool {
	return r.Header.Get("Upgrade") == "" && (r.Method == http.MethodGet || r.Method == http.MethodPost)
}

func (httpTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx := r.Context()
	media := responseType(r)
	if media == "" {
		writeErrors(w, mediaJSON, http.StatusNotAcceptable, gqlerror.List{coded(errs.BadUserInput,
			"the Accept header must allow %s or %s", mediaJSON, mediaGraphQLResponse)})
		return
	}
	start := graphql.Now()
	params, err := readParams(r)
	if err != nil {
		writeErrors(w, media, http.StatusBadRequest, gqlerror.List{coded(errs.BadUserInput, "%s", err.Error())})
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	opCtx, reqErrs := exec.CreateOperationContext(ctx, params)
	if reqErrs != nil {
		status := requestErrorStatus(reqErrs, media)
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, opCtx), reqErrs)
		switch status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", http.MethodPost)
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", "Bearer")
		case http.StatusOK:
			if unauthenticated(reqErrs) {
				w.Header().Set("WWW-Authenticate", "Bearer")
			}
		}
		writeErrors(w, media, status, resp.Errors)
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, opCtx)
	b, err := json.Marshal(responses(ctx))
	if err != nil {
		writeErrors(w, media, http.StatusInternalServerError, gqlerror.List{coded(errs.Internal, "internal error")})
		return
	}
	w.Header().Set("Content-Type", media+"; charset=utf-8")
	_, _ = w.Write(b)
}

// requestErrorStatus is the status of a response made of request errors (no data).
func requestErrorStatus(list gqlerror.List, media string) int {
	for _, e := range list {
		if e.Rule == ruleMutationOverGET {
			return http.StatusMethodNotAllowed
		}
	}
	switch {
	case media == mediaJSON:
		return http.StatusOK
	case unauthenticated(list):
		return http.StatusUnauthorized
	default:
		return http.StatusBadRequest
	}
}

func unauthenticated(list gqlerror.List) bool {
	for _, e := range list {
		if e.Extensions["code"] == string(errs.Unauthenticated) {
			return true
		}
	}
	return false
}

// refuseUnauthenticated answers a request whose credentials are refused before any GraphQL runs,
// as httpTransport answers an UNAUTHENTICATED request error; a websocket handshake gets 401. A
// bearer token refused says so in the challenge (RFC 6750); another scheme gets the bare one.
func refuseUnauthenticated(w http.ResponseWriter, r *http.Request, reason string) {
	challenge := `Bearer error="invalid_token"`
	if reason == reasonNotBearer {
		challenge = "Bearer"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	media := responseType(r)
	status := http.StatusUnauthorized
	switch {
	case r.Header.Get("Upgrade") != "" || media == "":
		media = mediaJSON
	case media == mediaJSON:
		status = http.StatusOK
	}
	writeErrors(w, media, status, gqlerror.List{coded(errs.Unauthenticated, "%s", reason)})
}

// writeErrors answers with errors and no data entry: a request that did not execute.
func writeErrors(w http.ResponseWriter, media string, status int, list gqlerror.List) {
	w.Header().Set("Content-Type", media+"; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Errors gqlerror.List `json:"errors"`
	}{list})
}

// writeGraphQLError answers a request refused before GraphQL ran (by its method, size, content
// type or upgrade), in the GraphQL response shape and the media type it accepts.
func writeGraphQLError(w http.ResponseWriter, r *http.Request, status int, code errs.Code, message string) {
	media := responseType(r)
	if media == "" || r.Header.Get("Upgrade") != "" {
		media = mediaJSON
	}
	writeErrors(w, media, status, gqlerror.List{coded(code, "%s", message)})
}

// responseType is the media type to answer r in: of application/json and
// application/graphql-response+json, the one its Accept header gives the higher quality (the
// most specific entry deciding, RFC 9110); on a tie, the one named rather than matched by a
// wildcard, then the one listed first. application/json without an Accept header or when only
// wildcards match; "" when neither is acceptable.
func responseType(r *http.Request) string {
	accept := strings.Join(r.Header.Values("Accept"), ",")
	if strings.TrimSpace(accept) == "" {
		return mediaJSON
	}
	type match struct {
		q           float64
		specificity int // 0 none, 1 */*, 2 application/*, 3 the type itself
		position    int
	}
	var json, graphQLResponse match
	for i, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil || q < 0 || q > 1 {
				continue
			}
		}
		for _, m := range []struct {
			media string
			into  *match
		}{{mediaJSON, &json}, {mediaGraphQLResponse, &graphQLResponse}} {
			specificity := 0
			switch mt {
			case m.media:
				specificity = 3
			case "application/*":
				specificity = 2
			case "*/*":
				specificity = 1
			}
			if specificity > m.into.specificity {
				*m.into = match{q: q, specificity: specificity, position: i}
			}
		}
	}
	switch {
	case json.q <= 0 && graphQLResponse.q <= 0:
		return ""
	case graphQLResponse.q != json.q:
		if graphQLResponse.q > json.q {
			return mediaGraphQLResponse
		}
		return mediaJSON
	case graphQLResponse.specificity == 3 && (json.specificity < 3 || graphQLResponse.position < json.position):
		return mediaGraphQLResponse // named, where application/json is not or later
	default:
		return mediaJSON // wildcards alone choose it, as before the spec's watershed (and graphql-http's audit)
	}
}

// readParams reads a GraphQL-over-HTTP request's parameters: from a POST's JSON body (read and
// bounded by guard) or a GET's query string. An error says why it is no GraphQL request.
func readParams(r *http.Request) (*graphql.RawParams, error) {
	fields := map[string]json.RawMessage{}
	if r.Method == http.MethodGet {
		values, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, errors.New("the query string is not URL-encoded")
		}
		for _, name := range []string{"query", "operationName"} {
			if v, ok := values[name]; ok {
				fields[name], _ = json.Marshal(v[0])
			}
		}
		for _, name := range []string{"variables", "extensions"} {
			if v, ok := values[name]; ok && v[0] != "" {
				fields[name] = json.RawMessage(v[0])
			}
		}
	} else {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, errors.New("could not read the request body")
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&fields); err != nil || fields == nil {
			return nil, errors.New("the request body must be a JSON object: {\"query\": ..., \"variables\": {...}}")
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("the request body must be one JSON object, and nothing after it")
		}
	}

	p := &graphql.RawParams{}
	str := func(name string, into *string) error {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			return nil
		}
		if json.Unmarshal(raw, into) != nil {
			return errors.New(name + " must be a string")
		}
		return nil
	}
	object := func(name string, into *map[string]any) error {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if dec.Decode(into) != nil || *into == nil {
			return errors.New(name + " must be a JSON object")
		}
		return nil
	}
	if raw, ok := fields["query"]; !ok || string(raw) == "null" {
		return nil, errors.New("a GraphQL request needs a query")
	}
	if err := errors.Join(str("query", &p.Query), str("operationName", &p.OperationName),
		object("variables", &p.Variables), object("extensions", &p.Extensions)); err != nil {
		return nil, err
	}
	return p, nil
}
