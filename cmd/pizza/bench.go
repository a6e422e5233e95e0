package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/internal/bench"
)

// cmdBench parses pizza bench's flags and hands the run to internal/bench, with the system laid
// out as this program lays it out (benchTarget).
func cmdBench(ctx context.Context, c cli, args []string) error {
	fs := newFlagSet("bench", "[flags]", `
Measure the whole system against the machine's own limit: bring it up in this process on its
own databases (pizza_bench_*) and queues, drive placeOrder through the real GraphQL endpoint
(closed loop, or open loop at --rate), and compare with the bare SQL transaction the accept path
needs, driven directly with pgx at the same concurrency. PostgreSQL and RabbitMQ must run.`)
	var s bench.Settings
	short := fs.Bool("short", false, "a 20s run (the default is 60s)")
	fs.DurationVar(&s.Duration, "duration", 0, "how long each phase runs (overrides --short)")
	fs.IntVar(&s.Clients, "clients", 64, "concurrent closed-loop clients (or open-loop workers)")
	fs.IntVar(&s.Regions, "regions", 8, "regions, with two open stores each")
	fs.IntVar(&s.Rate, "rate", 0, "open loop: orders per second to offer (0: closed loop)")
	fs.StringVar(&s.Record, "record", "", "append the result to this markdown file (BENCHMARKS.md)")
	fs.StringVar(&s.CPUProfile, "cpuprofile", "", "write a CPU profile of the system phase (with --subscribers: of the BFF while it pushes) to this file")
	fs.StringVar(&s.MemProfile, "memprofile", "", "write the allocation profile of the run (with --subscribers: the BFF's heap, subscribers connected) to this file")
	fs.IntVar(&s.Subscribers, "subscribers", 0, "instead: measure this many idle myPage subscribers on one BFF")
	rest, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef(fs, "unexpected arguments %q", rest)
	case s.Duration < 0:
		return usagef(fs, "--duration must not be negative")
	case s.Clients < 1:
		return usagef(fs, "--clients must be at least 1")
	case s.Regions < 1:
		return usagef(fs, "--regions must be at least 1")
	case s.Rate < 0:
		return usagef(fs, "--rate must not be negative")
	case s.Subscribers < 0:
		return usagef(fs, "--subscribers must not be negative")
	}
	if s.Duration == 0 {
		s.Duration = 60 * time.Second
		if *short {
			s.Duration = 20 * time.Second
		}
	}
	cfg, _, err := c.config()
	if err != nil {
		return err
	}
	t, err := benchTarget(cfg)
	if err != nil {
		return err
	}
	return bench.Run(ctx, t, s, c.stdout)
}

// benchTarget is the system as the bench needs it: this binary's `serve bff` for the subscriber
// measurement, and for the whole-system run fresh bench databases (pizza_bench_*), its own
// exchange and queues, and free ports, served in this process.
func benchTarget(cfg config) (bench.Target, error) {
	secret, err := cfg.authSecret(slog.New(slog.DiscardHandler))
	if err != nil {
		return bench.Target{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return bench.Target{}, err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return bench.Target{
		AMQPURL:    cfg.Common.AMQPURL,
		AuthSecret: secret,
		BFFCommand: []string{exe, "serve", "bff"},
		Prepare: func(ctx context.Context) (bench.System, error) {
			cfg, err := benchConfig(ctx, cfg, quiet)
			if err != nil {
				return bench.System{}, err
			}
			sys := bench.System{
				BFFAddr: cfg.BFF.HTTPAddr,
				Serve:   func(ctx context.Context) error { return serve(ctx, cfg, nil, quiet, io.Discard) },
			}
			for _, s := range db.Services {
				sc := cfg.service(s)
				sys.Services = append(sys.Services, bench.Service{
					Name: s, Addr: sc.Addr, DatabaseURL: sc.DatabaseURL, Queue: queueSpec(cfg, s).Name,
				})
			}
			return sys, nil
		},
	}, nil
}

// benchConfig points every component at fresh bench databases, its own exchange and queues, and
// free ports.
func benchConfig(ctx context.Context, cfg config, logger *slog.Logger) (config, error) {
	for _, s := range db.Services {
		u, err := db.WithDatabase(cfg.Common.DatabaseURL, "pizza_bench_"+string(s))
		if err != nil {
			return cfg, err
		}
		if err := dropDatabase(ctx, u); err != nil {
			return cfg, err
		}
		sc := cfg.service(s)
		sc.DatabaseURL = u
		addr, err := bench.FreePort()
		if err != nil {
			return cfg, err
		}
		sc.Addr, sc.URL = addr, "http://"+addr
	}
	addr, err := bench.FreePort()
	if err != nil {
		return cfg, err
	}
	cfg.BFF.HTTPAddr = addr
	cfg.BFF.OpsAddr = "" // the bench reads no BFF metrics: a running `make run` keeps its ops port
	cfg.Common.Seed = false
	cfg.BFF.SubscriberBuffer = 1024
	cfg.Common.Exchange = "pizza.events.bench"
	cfg.Common.QueueSuffix = ".bench"
	if err := purgeBenchQueues(cfg); err != nil {
		return cfg, err
	}
	return cfg, migrate(ctx, cfg, nil, logger)
}

func dropDatabase(ctx context.Context, dbURL string) error {
	name := dbURL[strings.LastIndex(dbURL, "/")+1:]
	name, _, _ = strings.Cut(name, "?")
	admin, err := db.WithDatabase(dbURL, "postgres")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func purgeBenchQueues(cfg config) error {
	conn, err := amqp.Dial(cfg.Common.AMQPURL)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	for _, s := range db.Services {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		q := queueSpec(cfg, s)
		_, _ = ch.QueueDelete(q.Name, false, false, false)
		_, _ = ch.QueueDelete(q.DLQ(), false, false, false)
		_ = ch.Close()
	}
	return nil
}
