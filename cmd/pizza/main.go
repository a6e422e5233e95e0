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
	"runtime"
	"runtime/debug"
	"slices"
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
  bench [flags]           measure the whole system against a pgx baseline (make bench)
  dlq list|replay|discard list, replay or discard the services' dead letters
  probe URL               exit 0 when URL answers 200 (container health checks)
  version                 print the version and the commit it was built from

Run 'pizza <command> -h' (or 'pizza help <command>') for a command's flags.
Configuration is read from the environment (PIZZA_*, DATABASE_URL, AMQP_URL, ...).
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
	err := run(ctx, os.Args[1:], environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode is the process's exit status for run's result: 0 for success and for help asked for
// (flag.ErrHelp), 2 for a usage error (run has printed it, with the usage, on stderr), 1 for any
// other failure, which it prints on stderr.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		fmt.Fprintln(stderr, "pizza:", err)
		return 1
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

// usageError is a command line pizza cannot run (an unknown command or flag, a missing or bad
// argument). run prints it on stderr followed by the command's usage; the exit status is 2.
type usageError struct {
	fs  *flag.FlagSet // the command's: its name and usage (nil: pizza's own)
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef is a usage error of the command fs.
func usagef(fs *flag.FlagSet, format string, a ...any) error {
	return &usageError{fs: fs, err: fmt.Errorf(format, a...)}
}

var errNoCommand = errors.New("no command given")

// newFlagSet is a command's flags, with its usage: "usage: pizza NAME SYNOPSIS", what it does,
// and its flags. Parse errors are not printed by the flag package: run prints them once, with
// the usage, on stderr; -h and --help print the usage on stdout (see parseArgs).
func newFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("pizza "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: pizza %s %s\n\n%s\n", name, synopsis, strings.Trim(about, "\n"))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// printUsage writes fs's usage (pizza's own for nil) to w.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	if fs == nil {
		fmt.Fprint(w, usage)
		return
	}
	fs.SetOutput(w)
	fs.Usage()
	fs.SetOutput(io.Discard)
}

// parseArgs parses fs's flags wherever they stand among the positional arguments (`pizza serve
// bff --help` asks for help; it does not name a component "--help"), and returns the positional
// ones. Everything after "--" is positional. -h or --help prints the usage on stdout and returns
// flag.ErrHelp; a bad flag is a usage error.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(fs, stdout)
				return nil, flag.ErrHelp
			}
			return nil, &usageError{fs: fs, err: err}
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		if used := len(args) - fs.NArg(); used > 0 && args[used-1] == "--" {
			return append(rest, fs.Args()...), nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// cli is what a command runs with: the environment it reads its configuration from, and its
// outputs.
type cli struct {
	environ        map[string]string
	stdout, stderr io.Writer
}

// config reads and checks the configuration, and makes the logger it asks for. Commands call it
// after parsing their arguments, so -h works whatever the environment holds.
func (c cli) config() (config, *slog.Logger, error) {
	cfg, err := loadConfig(c.environ)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, newLogger(cfg.Common, c.stderr), nil
}

// commands are pizza's commands by name.
var commands = map[string]func(ctx context.Context, c cli, args []string) error{
	"serve":   cmdServe,
	"migrate": cmdMigrate,
	"token":   cmdToken,
	"bench":   cmdBench,
	"dlq":     cmdDLQ,
	"probe":   cmdProbe,
	"version": cmdVersion,
}

// run is the whole program, with its environment and outputs passed in so tests can drive it.
// Its error maps to the exit status with exitCode: flag.ErrHelp after printing help on stdout, a
// *usageError (printed here, with the usage, on stderr), or what failed.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, cli{environ: environ, stdout: stdout, stderr: stderr})
	var ue *usageError
	if errors.As(err, &ue) {
		if !errors.Is(ue.err, errNoCommand) {
			name := "pizza"
			if ue.fs != nil {
				name = ue.fs.Name()
			}
			fmt.Fprintf(stderr, "%s: %v\n\n", name, ue.err)
		}
		printUsage(ue.fs, stderr)
	}
	return err
}

func dispatch(ctx context.Context, args []string, c cli) error {
	if len(args) == 0 {
		return &usageError{err: errNoCommand}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" { // pizza help serve: pizza serve --help
			return dispatch(ctx, append(slices.Clone(args[1:]), "--help"), c)
		}
		fmt.Fprint(c.stdout, usage)
		return flag.ErrHelp
	case "-version", "--version":
		return cmdVersion(ctx, c, nil)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return &usageError{err: fmt.Errorf("unknown command %q", args[0])}
	}
	return cmd(ctx, c, args[1:])
}

func cmdVersion(_ context.Context, c cli, args []string) error {
	fs := newFlagSet("version", "", "Print the version of pizza, the commit it was built from (with \"modified\" when the\n"+
		"working tree had uncommitted changes), and the Go toolchain that built it.")
	rest, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, "unexpected arguments %q", rest)
	}
	info, ok := debug.ReadBuildInfo()
	fmt.Fprint(c.stdout, versionText(info, ok))
	return nil
}

// versionText describes a build from its build information: the module's version, and the VCS
// revision, time and modified flag the go command stamps into binaries built in a checkout.
func versionText(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "pizza (unknown version: built without module information)\n"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var revision, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pizza %s\n", version)
	switch {
	case revision == "":
		b.WriteString("commit unknown (no VCS information: built outside a git checkout, or with -buildvcs=false)\n")
	default:
		fmt.Fprintf(&b, "commit %s", revision)
		if at != "" {
			fmt.Fprintf(&b, " (%s)", at)
		}
		if modified {
			b.WriteString(", modified: built with uncommitted changes")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%s %s/%s\n", info.GoVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func newLogger(c commonConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parseServices reads service names (none means all); an unknown one is a usage error of fs.
func parseServices(fs *flag.FlagSet, names []string) ([]db.Service, error) {
	if len(names) == 0 {
		return db.Services, nil
	}
	var out []db.Service
	for _, name := range names {
		s, err := db.ParseService(name)
		if err != nil {
			return nil, &usageError{fs: fs, err: err}
		}
		out = append(out, s)
	}
	return out, nil
}

func cmdMigrate(ctx context.Context, c cli, args []string) error {
	fs := newFlagSet("migrate", "[service ...]", `
Create each named service's database when it is missing and migrate it (River's tables
included); with no names, every service's: order, store, delivery, customercenter.
Idempotent, and safe to run from several processes at once.`)
	names, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	services, err := parseServices(fs, names)
	if err != nil {
		return err
	}
	cfg, logger, err := c.config()
	if err != nil {
		return err
	}
	return migrate(ctx, cfg, services, logger)
}

// migrate creates each service's database when missing and migrates it. It is idempotent and
// safe to run from several processes at once.
func migrate(ctx context.Context, cfg config, services []db.Service, logger *slog.Logger) error {
	if services == nil {
		services = db.Services
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

// cmdProbe is a health check for images with no shell or curl: GET url, succeed on 200.
func cmdProbe(ctx context.Context, c cli, args []string) error {
	fs := newFlagSet("probe", "URL", `
GET URL and exit 0 when it answers 200 OK, 1 otherwise (within 3 seconds). For container
health checks in images with no shell or curl.`)
	rest, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, "give one URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rest[0], nil)
	if err != nil {
		return usagef(fs, "%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", rest[0], resp.Status)
	}
	return nil
}

// cmdToken prints a bearer token for a role, signed with the configured secret.
func cmdToken(_ context.Context, c cli, args []string) error {
	fs := newFlagSet("token", "--role R [--customer ID | --store ID] [--ttl D]", `
Print a bearer token for the GraphQL API, signed with PIZZA_AUTH_SECRET (in development, when it
is unset, with the public development secret). Send it as "Authorization: Bearer <token>".`)
	role := fs.String("role", "", "the caller's role: customer, agent, master or admin (required)")
	customer := fs.String("customer", "", "the customer's id (with --role customer)")
	storeID := fs.String("store", "", "the store's id (with --role master)")
	ttl := fs.Duration("ttl", tokenTTL, "how long the token is valid")
	rest, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, "unexpected arguments %q", rest)
	}
	r := model.Role(strings.ToUpper(*role))
	if !r.IsValid() {
		return usagef(fs, "--role must be customer, agent, master or admin, not %q", *role)
	}
	var id string
	switch r {
	case model.RoleCustomer:
		id = *customer
	case model.RoleMaster:
		id = *storeID
	}
	if *customer != "" && r != model.RoleCustomer || *storeID != "" && r != model.RoleMaster {
		return usagef(fs, "--customer goes with --role customer, --store with --role master")
	}
	if *ttl <= 0 {
		return usagef(fs, "--ttl must be positive")
	}
	cfg, logger, err := c.config()
	if err != nil {
		return err
	}
	t, err := mintToken(cfg, logger, r, id, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(c.stdout, t)
	return nil
}

// mintToken signs a token with the configured secret.
func mintToken(cfg config, logger *slog.Logger, r model.Role, id string, ttl time.Duration) (string, error) {
	secret, err := cfg.authSecret(logger)
	if err != nil {
		return "", err
	}
	auth, err := graph.NewAuth(secret)
	if err != nil {
		return "", err
	}
	return auth.Mint(r, id, ttl)
}
