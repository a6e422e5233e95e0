package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/outbox"
)

// commonConfig is what every component of the process shares: where the servers are, and how
// the process logs and stops.
type commonConfig struct {
	Env           string     `env:"PIZZA_ENV" envDefault:"development"`
	DatabaseURL   string     `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"`
	AMQPURL       string     `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	Exchange      string     `env:"PIZZA_EXCHANGE" envDefault:"pizza.events"`
	QueueType     string     `env:"PIZZA_QUEUE_TYPE" envDefault:"classic"`
	DeliveryLimit int        `env:"PIZZA_DELIVERY_LIMIT" envDefault:"20"`
	LogLevel      slog.Level `env:"PIZZA_LOG_LEVEL" envDefault:"info"`
	// PProf serves /debug/pprof/ beside /metrics: on the services' internal addresses and the
	// BFF's PIZZA_OPS_ADDR, never on the BFF's public one.
	PProf           bool          `env:"PIZZA_PPROF" envDefault:"false"`
	LogFormat       string        `env:"PIZZA_LOG_FORMAT" envDefault:"text"`
	ShutdownTimeout time.Duration `env:"PIZZA_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// QueueSuffix is appended to every service's queue name: several systems (or tests) can
	// share one broker.
	QueueSuffix string `env:"PIZZA_QUEUE_SUFFIX"`
	// DBMaxConns bounds each service's connection pool (the relay gets half as many more).
	DBMaxConns int `env:"PIZZA_DB_MAX_CONNS" envDefault:"10"`
	// TraceEndpoint, when set, exports OpenTelemetry traces there (OTLP over HTTP).
	TraceEndpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	TraceService  string `env:"OTEL_SERVICE_NAME" envDefault:"pizza"`
	// Seed registers the development stores when the store service starts on a database with
	// no stores (development only; see seed.go). PIZZA_SEED=false turns it off.
	Seed bool `env:"PIZZA_SEED" envDefault:"true"`
}

// orderConfig is the order service's synchronous calls to the store service (the availability
// check and the cancel) and their breakers.
type orderConfig struct {
	StoreCheckTimeout  time.Duration `env:"STORE_CHECK_TIMEOUT" envDefault:"1s"`
	StoreCancelTimeout time.Duration `env:"STORE_CANCEL_TIMEOUT" envDefault:"5s"`
	BreakerTripAfter   uint32        `env:"BREAKER_TRIP_AFTER" envDefault:"5"`
	BreakerOpenFor     time.Duration `env:"BREAKER_OPEN_FOR" envDefault:"10s"`
	BreakerProbes      uint32        `env:"BREAKER_PROBES" envDefault:"1"`
}

// storeConfig is the store service's own tuning.
type storeConfig struct {
	// CheckConns are the availability check's own connections, apart from the service's pool.
	CheckConns int `env:"STORE_CHECK_CONNS" envDefault:"2"`
}

// relayConfig tunes a service's outbox relay and consumer; every service reads the same names.
type relayConfig struct {
	Workers           int           `env:"OUTBOX_WORKERS" envDefault:"256"`
	FetchCooldown     time.Duration `env:"OUTBOX_FETCH_COOLDOWN" envDefault:"1ms"`
	FetchPollInterval time.Duration `env:"OUTBOX_FETCH_POLL_INTERVAL" envDefault:"50ms"`
	Retention         time.Duration `env:"OUTBOX_RETENTION" envDefault:"1h"`
	InboxRetention    time.Duration `env:"OUTBOX_INBOX_RETENTION" envDefault:"168h"`
	AsyncCommit       bool          `env:"OUTBOX_ASYNC_COMMIT" envDefault:"true"`
	PollOnly          bool          `env:"OUTBOX_POLL_ONLY" envDefault:"false"`
	DirectPublish     bool          `env:"OUTBOX_DIRECT_PUBLISH" envDefault:"true"`
	DirectGrace       time.Duration `env:"OUTBOX_DIRECT_GRACE" envDefault:"5s"`
	Prefetch          int           `env:"CONSUMER_PREFETCH" envDefault:"256"`
	Concurrency       int           `env:"CONSUMER_CONCURRENCY" envDefault:"2"`
	MaxAttempts       int           `env:"CONSUMER_MAX_ATTEMPTS" envDefault:"5"`
	BatchSize         int           `env:"CONSUMER_BATCH_SIZE" envDefault:"64"`
}

// serviceConfig is one service's own settings: its internal HTTP address and, when it has its
// own server, its database URL. Each service reads its own prefixed names (ORDER_ADDR, ...).
type serviceConfig struct {
	Addr        string `env:"ADDR"`
	DatabaseURL string `env:"DATABASE_URL"`
	// URL is where callers find the service (default: http:// and its ADDR).
	URL string `env:"URL"`
}

// bffConfig is the GraphQL BFF's: its addresses, its token key and its limits.
type bffConfig struct {
	// HTTPAddr is the public API's address: loopback unless set (see checkExposure).
	HTTPAddr string `env:"PIZZA_HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	// OpsAddr serves the BFF's /metrics (and /debug/pprof/ with PIZZA_PPROF), apart from the
	// public API; set to the empty string, none is served. Its default is defaultOpsAddr.
	OpsAddr          string        `env:"PIZZA_OPS_ADDR"`
	AuthSecret       string        `env:"PIZZA_AUTH_SECRET"`
	AllowedOrigins   []string      `env:"PIZZA_ALLOWED_ORIGINS" envSeparator:","`
	MaxBodyBytes     int64         `env:"PIZZA_MAX_BODY_BYTES" envDefault:"65536"`
	MaxComplexity    int           `env:"PIZZA_MAX_COMPLEXITY" envDefault:"500"`
	MaxDepth         int           `env:"PIZZA_MAX_DEPTH" envDefault:"10"`
	MaxAliases       int           `env:"PIZZA_MAX_ALIASES" envDefault:"30"`
	MaxTokens        int           `env:"PIZZA_MAX_TOKENS" envDefault:"5000"`
	WSInitTimeout    time.Duration `env:"PIZZA_WS_INIT_TIMEOUT" envDefault:"5s"`
	WSKeepAlive      time.Duration `env:"PIZZA_WS_KEEPALIVE" envDefault:"15s"`
	SubscriberBuffer int           `env:"PIZZA_SUBSCRIBER_BUFFER" envDefault:"32"`
}

// developmentSecret signs tokens when PIZZA_AUTH_SECRET is unset outside production.
const developmentSecret = "1588-pizza-development-secret: not for production"

// The environments PIZZA_ENV may name. Anything else is refused at start: a misspelt
// "production" must never run as development, with its public secret and introspection.
const (
	envDevelopment = "development"
	envProduction  = "production"
)

// production reports whether the process runs with PIZZA_ENV=production.
func (c config) production() bool { return c.Common.Env == envProduction }

// authSecret is the token key, refusing production without a configured, strong one.
func (c config) authSecret(logger *slog.Logger) (string, error) {
	if c.production() {
		if c.BFF.AuthSecret == "" {
			return "", errors.New("PIZZA_ENV=production needs PIZZA_AUTH_SECRET; refusing to use the development secret. " + secretHint)
		}
		if err := checkProductionSecret(c.BFF.AuthSecret); err != nil {
			return "", fmt.Errorf("PIZZA_AUTH_SECRET: %w. %s", err, secretHint)
		}
		return c.BFF.AuthSecret, nil
	}
	if c.BFF.AuthSecret != "" {
		return c.BFF.AuthSecret, nil
	}
	logger.Warn("PIZZA_AUTH_SECRET is not set: tokens are signed with the public development secret")
	return developmentSecret, nil
}

const secretHint = "Generate one with `openssl rand -base64 32`"

// checkExposure refuses to serve the BFF beyond this machine while tokens are signed with the
// development secret: it is public (it is in this file), so anyone who could reach the port
// could mint themselves an admin token.
func (c config) checkExposure(ctx context.Context, secret string) error {
	if secret != developmentSecret {
		return nil
	}
	loopback, err := isLoopback(ctx, c.BFF.HTTPAddr)
	if loopback {
		return nil
	}
	why := "listens beyond this machine"
	if err != nil {
		why = fmt.Sprintf("may listen beyond this machine (%v)", err)
	}
	return fmt.Errorf("PIZZA_HTTP_ADDR=%s %s, and tokens are signed with the public development secret: "+
		"anyone who can reach it could mint an admin token. Set PIZZA_AUTH_SECRET to a secret of your own "+
		"(export PIZZA_AUTH_SECRET=\"$(openssl rand -base64 32)\"), or listen on loopback (PIZZA_HTTP_ADDR=127.0.0.1:8080)",
		c.BFF.HTTPAddr, why)
}

// isLoopback reports whether a listen address (host:port) is reachable from this machine only:
// a loopback IP, localhost, or a name that resolves to loopback IPs only. An empty host or an
// unspecified IP (0.0.0.0, ::) listens on every interface.
func isLoopback(ctx context.Context, addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "" {
		return false, nil
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().IsLoopback(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		if !ip.Unmap().IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// minProductionSecret is the shortest secret production accepts, in bytes.
const minProductionSecret = 32

// placeholderMarks are what a value copied from an example rather than generated contains
// (compared lower-cased, with everything but letters and digits removed).
var placeholderMarks = []string{"changeme", "placeholder", "replaceme", "yoursecret", "example", "notforproduction", "xxxxxxxx"}

// checkProductionSecret refuses a token key that anyone could guess: short, a placeholder or the
// development secret, or repetitive (a run of 8 bytes that occurs twice, as in "abcdabcd..." or
// a phrase typed twice). A secret generated by a random source passes all three.
func checkProductionSecret(s string) error {
	if s == developmentSecret {
		return errors.New("is the public development secret")
	}
	if len(s) < minProductionSecret {
		return fmt.Errorf("is %d bytes; production needs at least %d", len(s), minProductionSecret)
	}
	folded := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return -1
	}, s)
	for _, m := range placeholderMarks {
		if strings.Contains(folded, m) {
			return errors.New("is a placeholder, not a secret")
		}
	}
	const run = 8
	seen := make(map[string]bool, len(s))
	for i := 0; i+run <= len(s); i++ {
		if seen[s[i:i+run]] {
			return errors.New("is repetitive; use random bytes")
		}
		seen[s[i:i+run]] = true
	}
	return nil
}

type config struct {
	Common      commonConfig
	BFF         bffConfig
	Relay       relayConfig
	OrderTuning orderConfig
	StoreTuning storeConfig

	Order          serviceConfig `envPrefix:"ORDER_"`
	Store          serviceConfig `envPrefix:"STORE_"`
	Delivery       serviceConfig `envPrefix:"DELIVERY_"`
	CustomerCenter serviceConfig `envPrefix:"CUSTOMERCENTER_"`
}

// defaultOpsAddr is PIZZA_OPS_ADDR when the variable is not set at all.
const defaultOpsAddr = "127.0.0.1:9090"

var defaultAddrs = map[db.Service]string{
	db.Order:          "127.0.0.1:8081",
	db.Store:          "127.0.0.1:8082",
	db.Delivery:       "127.0.0.1:8083",
	db.CustomerCenter: "127.0.0.1:8084",
}

// loadConfig reads the configuration once from environ and checks it.
func loadConfig(environ map[string]string) (config, error) {
	var c config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if _, set := environ["PIZZA_OPS_ADDR"]; !set {
		c.BFF.OpsAddr = defaultOpsAddr
	}
	for _, s := range db.Services {
		sc := c.service(s)
		if sc.Addr == "" {
			sc.Addr = defaultAddrs[s]
		}
		if sc.URL == "" {
			host, port, err := net.SplitHostPort(sc.Addr)
			if err != nil {
				return c, fmt.Errorf("configuration: %s_ADDR: %w", strings.ToUpper(string(s)), err)
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			sc.URL = "http://" + net.JoinHostPort(host, port)
		}
		if sc.DatabaseURL == "" {
			u, err := db.WithDatabase(c.Common.DatabaseURL, s.DatabaseName())
			if err != nil {
				return c, fmt.Errorf("configuration: DATABASE_URL: %w", err)
			}
			sc.DatabaseURL = u
		}
	}
	switch c.Common.Env {
	case envDevelopment, envProduction:
	default:
		return c, fmt.Errorf("configuration: PIZZA_ENV must be %s or %s (exactly, lower case), not %q", envDevelopment, envProduction, c.Common.Env)
	}
	if c.production() && environ["PIZZA_SEED"] != "" && c.Common.Seed {
		return c, errors.New("configuration: PIZZA_SEED registers example stores in development only; unset it in production")
	}
	if c.StoreTuning.CheckConns < 1 {
		return c, fmt.Errorf("configuration: STORE_CHECK_CONNS must be at least 1, not %d", c.StoreTuning.CheckConns)
	}
	switch c.Common.QueueType {
	case outbox.QueueClassic, outbox.QueueQuorum:
	default:
		return c, fmt.Errorf("configuration: PIZZA_QUEUE_TYPE must be classic or quorum, not %q", c.Common.QueueType)
	}
	if c.Relay.DirectGrace < 100*time.Millisecond {
		return c, fmt.Errorf("configuration: OUTBOX_DIRECT_GRACE must be at least 100ms, not %s", c.Relay.DirectGrace)
	}
	if c.Relay.FetchCooldown < time.Millisecond {
		return c, fmt.Errorf("configuration: OUTBOX_FETCH_COOLDOWN must be at least 1ms, not %s", c.Relay.FetchCooldown)
	}
	if c.Relay.FetchPollInterval < c.Relay.FetchCooldown {
		return c, fmt.Errorf("configuration: OUTBOX_FETCH_POLL_INTERVAL (%s) must not be shorter than OUTBOX_FETCH_COOLDOWN (%s)",
			c.Relay.FetchPollInterval, c.Relay.FetchCooldown)
	}
	switch c.Common.LogFormat {
	case "text", "json":
	default:
		return c, fmt.Errorf("configuration: PIZZA_LOG_FORMAT must be text or json, not %q", c.Common.LogFormat)
	}
	return c, nil
}

func (c *config) service(s db.Service) *serviceConfig {
	switch s {
	case db.Order:
		return &c.Order
	case db.Store:
		return &c.Store
	case db.Delivery:
		return &c.Delivery
	default:
		return &c.CustomerCenter
	}
}
