// Command pizza is 1588-pizza's one binary: serve any mix of its components, migrate their
// databases, mint tokens, and drive the benchmark.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/graph/model"
)

const usage = `usage: pizza <command> [arguments]

commands:
  serve [component ...]   run the named components (default: all) in this process;
                          components: bff, order, store, delivery, customercenter
  migrate [service ...]   create and migrate the services' databases (default: all)
  token --role R [--customer ID | --store ID] [--ttl D]
                          print a signed bearer token; R is customer, agent, master or admin
  bench [--short] [--clients N] [--rate R] [--record FILE]
                          measure the whole system against a pgx baseline (make bench)
  dlq list [--service S] [--limit N] [--json]
  dlq replay --service S (ID ... | --all)
  dlq discard --service S ID ...
                          list, replay or discard the services' dead letters, working on their
                          databases and RabbitMQ directly (the services need not run)
  probe URL               exit 0 when URL answers 200 (container health checks)

Configuration is read from the environment; see README.md.
`

func main() {
	// Every request and event leaves short-lived garbage, and little of the heap lives long. At
	// Go's default (100) the collector took 13% of the process in the bench; 400 leaves it a
	// quarter of that for about four times the heap (60 -> 90-125 MiB at 1,800 orders/s), 5%
	// more orders per second than 200 in paired runs. GOGC, and GOMEMLIMIT in a container with a
	// memory limit (which caps the heap whatever GOGC says), override it.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pizza:", err)
		os.Exit(1)
	}
}

func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// errUsage asks for the usage text; run prints it.
var errUsage = errors.New("see usage above")

// run is the whole program, with its environment and outputs passed in so tests can drive it.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	if args[0] == "probe" { // needs no configuration
		return probe(ctx, args[1:])
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Common, stderr)
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, cfg, rest, logger)
	case "migrate":
		return migrate(ctx, cfg, rest, logger)
	case "token":
		return token(cfg, rest, stdout, logger)
	case "bench":
		return bench(ctx, cfg, rest, stdout, logger)
	case "dlq":
		return dlq(ctx, cfg, rest, stdout, logger)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func newLogger(c commonConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parseServices reads service names from args (none means all).
func parseServices(fs *flag.FlagSet, args []string) ([]db.Service, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() == 0 {
		return db.Services, nil
	}
	var out []db.Service
	for _, name := range fs.Args() {
		s, err := db.ParseService(name)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// migrate creates each named service's database when missing and migrates it. It is
// idempotent and safe to run from several processes at once.
func migrate(ctx context.Context, cfg config, args []string, logger *slog.Logger) error {
	services, err := parseServices(flag.NewFlagSet("migrate", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	for _, s := range services {
		url := cfg.service(s).DatabaseURL
		if err := db.EnsureDatabase(ctx, url); err != nil {
			return fmt.Errorf("migrate %s: %w", s, err)
		}
		if err := db.Migrate(ctx, url, s, logger); err != nil {
			return fmt.Errorf("migrate %s: %w", s, err)
		}
		logger.InfoContext(ctx, "database ready", "service", s, "database", s.DatabaseName())
	}
	return nil
}

// probe is a health check for images with no shell or curl: GET url, succeed on 200.
func probe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: pizza probe URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	return nil
}

// token prints a bearer token for a role, signed with the configured secret.
func token(cfg config, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	role := fs.String("role", "", "customer, agent, master or admin")
	customer := fs.String("customer", "", "the customer's id (role customer)")
	storeID := fs.String("store", "", "the store's id (role master)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	r := model.Role(strings.ToUpper(*role))
	if !r.IsValid() {
		return fmt.Errorf("token: --role must be customer, agent, master or admin, not %q", *role)
	}
	var id string
	switch r {
	case model.RoleCustomer:
		id = *customer
	case model.RoleMaster:
		id = *storeID
	}
	if *customer != "" && r != model.RoleCustomer || *storeID != "" && r != model.RoleMaster {
		return fmt.Errorf("token: --customer goes with --role customer, --store with --role master")
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	secret, err := cfg.authSecret(logger)
	if err != nil {
		return err
	}
	auth, err := graph.NewAuth(secret)
	if err != nil {
		return err
	}
	t, err := auth.Mint(r, id, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, t)
	return nil
}
