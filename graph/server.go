package graph

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/web"
)

// ServerConfig is what the BFF's server needs beyond its backends.
type ServerConfig struct {
	// Context ends every websocket when it is done (default: never).
	Context context.Context
	// Production turns off introspection and every suggestion ("Did you mean ...?").
	Production bool
	// MaxBodyBytes bounds a request body, and a URL's query string (default 64 KiB).
	MaxBodyBytes int64
	// MaxComplexity, MaxDepth, MaxAliases and MaxTokens bound an operation's shape (defaults
	// 500, 10, 30, 5000). Introspection has depth bounds of its own (see shapeLimits).
	MaxComplexity, MaxDepth, MaxAliases, MaxTokens int
	// AllowedOrigins are the browser origins (host patterns, as "app.example.com" or
	// "*.example.com") allowed to open a websocket besides the server's own host.
	AllowedOrigins []string
	// InitTimeout bounds the wait for a websocket's connection_init (default 5s), and KeepAlive
	// is the interval of pings on it (default 15s).
	InitTimeout, KeepAlive time.Duration
	// MaxSocketOperations bounds the operations running at once on one websocket: its
	// subscriptions, and queries or mutations not yet answered (default 100). One more is
	// answered with an error for its id.
	MaxSocketOperations int
	// SubscriberBuffer is each subscriber's buffer of rows not yet sent (default 32).
	SubscriberBuffer int
	// Metrics, when set, receives the GraphQL latency histogram.
	Metrics prometheus.Registerer
	Logger  *slog.Logger
}

// NewHandler returns the BFF's HTTP handler: the web console at / (and its routes, see package
// web), GraphiQL at /playground, GraphQL at /graphql over POST,
// GET (queries only; see httpTransport for the statuses) and websocket (graphql-transport-ws,
// see wsTransport).
func NewHandler(cfg ServerConfig, auth *Auth, be Backends, hub *Hub) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.MaxComplexity <= 0 {
		cfg.MaxComplexity = 500
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 10
	}
	if cfg.MaxAliases <= 0 {
		cfg.MaxAliases = 30
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 5000
	}
	if cfg.MaxSocketOperations <= 0 {
		cfg.MaxSocketOperations = 100
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = 5 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	srv := handler.New(NewExecutableSchema(Config{Resolvers: &Resolver{be: be, hub: hub, logger: cfg.Logger}}))
	if cfg.Context == nil {
		cfg.Context = context.Background()
	}
	srv.AddTransport(newWSTransport(cfg.Context, auth, cfg.AllowedOrigins, cfg.InitTimeout, cfg.KeepAlive,
		cfg.MaxBodyBytes, cfg.MaxSocketOperations, cfg.Logger))
	srv.AddTransport(httpTransport{})
	cache := lru.New[*ast.QueryDocument](1000)
	srv.SetQueryCache(cache)
	srv.SetParserTokenLimit(cfg.MaxTokens)
	srv.SetValidationRulesFn(validationRules(!cfg.Production))
	srv.Use(newDocumentLimits(cfg.MaxTokens, cfg.Production, cache))
	srv.SetErrorPresenter(presentError(cfg.Logger))
	srv.SetRecoverFunc(func(ctx context.Context, v any) error {
		cfg.Logger.ErrorContext(ctx, "resolver panicked", "panic", v)
		return errors.New("internal error")
	})
	if cfg.Production {
		srv.SetDisableSuggestion(true)
	} else {
		srv.Use(extension.Introspection{})
	}
	srv.Use(shapeLimits{maxDepth: cfg.MaxDepth, maxAliases: cfg.MaxAliases, maxFields: 2 * cfg.MaxComplexity,
		noIntrospection: cfg.Production})
	srv.Use(extension.FixedComplexityLimit(cfg.MaxComplexity))
	srv.AroundRootFields(requireViewer)
	if cfg.Metrics != nil {
		srv.AroundRootFields(timeRootFields(cfg.Metrics))
	}

	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(web.Options{DevSignIn: !cfg.Production})) // the console, and GraphiQL at /playground
	mux.Handle("/graphql", guard(cfg.MaxBodyBytes, auth.middleware(srv)))
	return mux
}

// timeRootFields records each query and mutation field's latency: the API's operations (the
// client's own operation names are unbounded, the schema's fields are not).
func timeRootFields(reg prometheus.Registerer) graphql.RootFieldMiddleware {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pizza_graphql_field_duration_seconds",
		Help:    "GraphQL query and mutation fields by name: the API's operations.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"field"})
	reg.MustRegister(h)
	return func(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
		start := time.Now()
		res := next(ctx)
		h.WithLabelValues(graphql.GetRootFieldContext(ctx).Field.Name).Observe(time.Since(start).Seconds())
		return res
	}
}

// guard admits only what the API speaks before anything is parsed: bounded bodies and query
// strings, JSON POSTs
// (a form or text/plain POST is what a cross-site page can send without asking), GETs, and
// websocket upgrades offering graphql-transport-ws. It also notes the method for shapeLimits.
func guard(maxBody int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrade := r.Header.Get("Upgrade")
		if int64(len(r.URL.RawQuery)) > maxBody { // a GET's query is its body
			writeGraphQLError(w, r, http.StatusRequestURITooLong, errs.BadUserInput, "query string too long")
			return
		}
		switch {
		case upgrade != "" && !strings.EqualFold(upgrade, "websocket"):
			writeGraphQLError(w, r, http.StatusBadRequest, errs.BadUserInput, "the only upgrade offered is websocket")
			return
		case upgrade != "":
			if !offersProtocol(r.Header.Values("Sec-WebSocket-Protocol"), "graphql-transport-ws") {
				writeGraphQLError(w, r, http.StatusBadRequest, errs.BadUserInput, "websockets must use the graphql-transport-ws sub-protocol")
				return
			}
		case r.Method == http.MethodGet:
		case r.Method == http.MethodPost:
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				writeGraphQLError(w, r, http.StatusUnsupportedMediaType, errs.BadUserInput, "POST bodies must be application/json")
				return
			}
			if r.ContentLength > maxBody {
				writeGraphQLError(w, r, http.StatusRequestEntityTooLarge, errs.BadUserInput, "request body too large")
				return
			}
			// Read here, so that a body without a length (chunked) is refused like one with.
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
					writeGraphQLError(w, r, http.StatusRequestEntityTooLarge, errs.BadUserInput, "request body too large")
				} else {
					writeGraphQLError(w, r, http.StatusBadRequest, errs.BadUserInput, "could not read the request body")
				}
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		default:
			w.Header().Set("Allow", "GET, POST")
			writeGraphQLError(w, r, http.StatusMethodNotAllowed, errs.BadUserInput, "use GET or POST")
			return
		}
		method := r.Method
		if upgrade != "" {
			method = methodWebsocket
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), methodKey{}, method)))
	})
}

// offersProtocol reports whether the comma-separated sub-protocol lists name want exactly.
func offersProtocol(headers []string, want string) bool {
	for _, h := range headers {
		for _, p := range strings.Split(h, ",") {
			if strings.TrimSpace(p) == want {
				return true
			}
		}
	}
	return false
}
