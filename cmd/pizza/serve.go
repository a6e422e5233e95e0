package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/delivery"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

func cmdServe(ctx context.Context, c cli, args []string) error {
	fs := newFlagSet("serve", "[component ...]", `
Run the named components in this process until SIGINT or SIGTERM, then shut them down
gracefully; with no names, all of them. Components: bff (the public GraphQL API on
PIZZA_HTTP_ADDR, its metrics on PIZZA_OPS_ADDR), order, store, delivery, customercenter (their
internal APIs on ORDER_ADDR, STORE_ADDR, ...). In development, once every component is ready,
it prints the URLs and a token per role.`)
	names, err := parseArgs(fs, args, c.stdout)
	if err != nil {
		return err
	}
	if _, _, err := parseComponents(names); err != nil {
		return &usageError{fs: fs, err: err}
	}
	cfg, logger, err := c.config()
	if err != nil {
		return err
	}
	return serve(ctx, cfg, names, logger, c.stdout)
}

// serve runs the named components until ctx ends (SIGTERM), then shuts each down gracefully:
// readiness goes false, HTTP drains, consumers stop, River soft-stops, connections close. Once
// every component is ready it says so: in development, with a summary on stdout (see announce).
func serve(ctx context.Context, cfg config, args []string, logger *slog.Logger, stdout io.Writer) error {
	withBFF, services, err := parseComponents(args)
	if err != nil {
		return err
	}
	var auth *graph.Auth
	if withBFF {
		secret, err := cfg.authSecret(logger)
		if err != nil {
			return err
		}
		if err := cfg.checkExposure(ctx, secret); err != nil {
			return err
		}
		if auth, err = graph.NewAuth(secret); err != nil {
			return fmt.Errorf("PIZZA_AUTH_SECRET: %w", err)
		}
	}
	shutdownTracing, err := startTracing(ctx, cfg)
	if err != nil {
		return err
	}
	defer shutdownTracing()
	httpapi.TraceCalls(tracing())
	outbox.Trace(tracing())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := outbox.NewMetrics(reg)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n := len(services)
	if withBFF {
		n++
	}
	ups := make(chan started, n)
	up := func(s started) { ups <- s }
	announced := make(chan struct{})
	go func() { defer close(announced); announce(ctx, cfg, n, ups, auth, stdout, logger) }()
	var wg sync.WaitGroup
	errs := make([]error, len(services)+1)
	if withBFF {
		wg.Go(func() {
			if errs[len(services)] = runBFF(ctx, cfg, auth, reg, up, logger.With("component", "bff")); errs[len(services)] != nil {
				cancel(errs[len(services)])
			}
		})
	}
	for i, s := range services {
		wg.Go(func() {
			errs[i] = runService(ctx, cfg, s, reg, metrics, up, logger.With("service", s))
			if errs[i] != nil {
				cancel(errs[i]) // one component failing stops the process: let the orchestrator restart it
			}
		})
	}
	wg.Wait()
	cancel(nil)
	<-announced
	return errors.Join(errs...)
}

// parseComponents reads component names: bff and the services; none means all.
func parseComponents(args []string) (withBFF bool, services []db.Service, err error) {
	if len(args) == 0 {
		return true, db.Services, nil
	}
	for _, name := range args {
		if name == "bff" {
			withBFF = true
			continue
		}
		s, err := db.ParseService(name)
		if err != nil {
			return false, nil, fmt.Errorf("%w, or bff", err)
		}
		services = append(services, s)
	}
	return withBFF, services, nil
}

// runBFF runs the GraphQL BFF: the public API, and the listener feeding live subscriptions (myPage,
// store boards).
func runBFF(ctx context.Context, cfg config, auth *graph.Auth, reg *prometheus.Registry, up func(started), logger *slog.Logger) error {
	ctx, stop := context.WithCancel(ctx) // also ends the listener when the HTTP server fails
	defer stop()
	hub := graph.NewHub(cfg.BFF.SubscriberBuffer, 300*time.Millisecond, logger)
	defer hub.Close()
	listener := outbox.NewListener(outbox.ListenConfig{
		URL: cfg.Common.AMQPURL, Exchange: cfg.Common.Exchange, Keys: graph.LiveKeys,
		Name: "pizza-bff-live", OnMessage: hub.Publish, OnReconnect: hub.Resync, Logger: logger,
	})
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pizza_bff_subscribers", Help: "Live subscriptions (myPage and store boards) on this BFF replica.",
	}, func() float64 { return float64(hub.Subscribers()) })); err != nil {
		return err
	}

	// Websockets end after the HTTP drain (their clients resubscribe elsewhere, replaying what
	// they missed).
	wsCtx, endWebsockets := context.WithCancel(context.WithoutCancel(ctx))
	defer endWebsockets()
	gql := graph.NewHandler(graph.ServerConfig{
		Context:          wsCtx,
		Production:       cfg.production(),
		MaxBodyBytes:     cfg.BFF.MaxBodyBytes,
		MaxComplexity:    cfg.BFF.MaxComplexity,
		MaxDepth:         cfg.BFF.MaxDepth,
		MaxAliases:       cfg.BFF.MaxAliases,
		MaxTokens:        cfg.BFF.MaxTokens,
		AllowedOrigins:   cfg.BFF.AllowedOrigins,
		InitTimeout:      cfg.BFF.WSInitTimeout,
		KeepAlive:        cfg.BFF.WSKeepAlive,
		SubscriberBuffer: cfg.BFF.SubscriberBuffer,
		Metrics:          reg,
		Logger:           logger,
	}, auth, graph.Backends{
		Orders:         order.NewClient(cfg.Order.URL),
		Stores:         store.NewClient(cfg.Store.URL),
		CustomerCenter: customercenter.NewClient(cfg.CustomerCenter.URL),
		Services: map[string]graph.ServiceAPI{
			string(db.Order): httpapi.NewClient(cfg.Order.URL), string(db.Store): httpapi.NewClient(cfg.Store.URL),
			string(db.Delivery): httpapi.NewClient(cfg.Delivery.URL), string(db.CustomerCenter): httpapi.NewClient(cfg.CustomerCenter.URL),
		},
	}, hub)
	ready := func(context.Context) error {
		if !listener.Connected() {
			return errors.New("rabbitmq: not connected")
		}
		return nil
	}
	// The public port serves the API and the probes (readiness is no secret: load balancers and
	// Kubernetes ask for it there). Metrics and profiles are on the ops address only: they tell
	// an outsider too much, and a profile costs the server CPU.
	srv := newOpsServer("bff", cfg.BFF.HTTPAddr, ready, tracing(), reg, logger)
	srv.mux.Handle("/", gql)
	srv.mux.Handle("/metrics", http.NotFoundHandler()) // not the playground, which "/" would answer
	srv.mux.Handle("/debug/pprof/", http.NotFoundHandler())
	// The console's development sign-in signs any token for anyone who asks: it exists only in
	// development, where tokens are signed with the public development secret (or a developer's
	// own, on a BFF only they reach). In production nothing answers under /dev/.
	if cfg.production() {
		srv.mux.Handle("/dev/", http.NotFoundHandler())
	} else {
		srv.mux.Handle(graph.DevTokenPath, graph.DevTokens(auth, tokenTTL, logger))
		if loopback, _ := isLoopback(ctx, cfg.BFF.HTTPAddr); !loopback {
			logger.WarnContext(ctx, "PIZZA_ENV=development: "+graph.DevTokenPath+" signs any token (an admin's too) for anyone who can reach "+
				cfg.BFF.HTTPAddr+"; keep this BFF private, or run it with PIZZA_ENV=production", "addr", cfg.BFF.HTTPAddr)
		}
	}
	ln, err := net.Listen("tcp", cfg.BFF.HTTPAddr)
	if err != nil {
		return fmt.Errorf("bff: listen on %s: %w", cfg.BFF.HTTPAddr, err)
	}
	var ops *opsServer
	var opsLn net.Listener
	if cfg.BFF.OpsAddr != "" {
		ops = newOpsServer("bff", cfg.BFF.OpsAddr, ready, false, reg, logger)
		ops.serveMetrics(reg, cfg.Common.PProf)
		if opsLn, err = net.Listen("tcp", cfg.BFF.OpsAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("bff: listen on PIZZA_OPS_ADDR %s: %w", cfg.BFF.OpsAddr, err)
		}
	}
	waitListener := goRun(ctx, listener.Run)
	logger.InfoContext(ctx, "serving GraphQL", "addr", ln.Addr().String(), "playground", browseURL(cfg.BFF.HTTPAddr, ln.Addr()))

	var servers serving
	servers.serve(srv, ln)
	s := started{name: "bff", ready: ready, url: browseURL(cfg.BFF.HTTPAddr, ln.Addr())}
	if ops != nil {
		servers.serve(ops, opsLn)
		s.opsURL = browseURL(cfg.BFF.OpsAddr, opsLn.Addr())
		logger.InfoContext(ctx, "serving metrics", "addr", opsLn.Addr().String())
	}
	up(s)
	var result error
	if err := servers.untilDone(ctx); err != nil {
		result = fmt.Errorf("bff: http: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Common.ShutdownTimeout)
	defer cancel()
	srv.shutdown(sctx)
	endWebsockets()
	if ops != nil {
		ops.shutdown(sctx)
	}
	servers.wait()
	stop()
	waitListener()
	return result
}

// runService runs one service: its pool, its outbox relay, its consumer, and its internal HTTP
// API with the operational endpoints.
func runService(ctx context.Context, cfg config, s db.Service, reg *prometheus.Registry, metrics *outbox.Metrics, up func(started), logger *slog.Logger) error {
	ctx, stop := context.WithCancel(ctx) // also ends the consumer when the HTTP server fails
	defer stop()
	sc := cfg.service(s)
	pool, err := openPool(ctx, sc.DatabaseURL, cfg.Common.DBMaxConns, false)
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	defer pool.Close()
	// The relay's own bookkeeping (fetching and completing jobs) commits without waiting for the
	// WAL flush: losing it in a crash only makes an event publish again, which consumers absorb.
	// Events themselves are written in the caller's transaction, on the synchronous pool.
	relayPool, err := openPool(ctx, sc.DatabaseURL, max(2, cfg.Common.DBMaxConns/2), cfg.Relay.AsyncCommit)
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	defer relayPool.Close()
	pools := map[string]*pgxpool.Pool{"main": pool, "relay": relayPool}
	if s == db.Store {
		// The availability check answers the order service synchronously, behind its breaker:
		// its connections are its own, so it never queues behind the service's other work.
		checkPool, err := openPool(ctx, sc.DatabaseURL, cfg.StoreTuning.CheckConns, false)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		defer checkPool.Close()
		pools["check"] = checkPool
	}
	for role, p := range pools {
		c := db.NewPoolCollector(p, string(s), role)
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		defer reg.Unregister(c)
	}

	pub := outbox.NewPublisher(outbox.PublisherConfig{
		URL: cfg.Common.AMQPURL, Exchange: cfg.Common.Exchange, Name: "pizza-" + string(s) + "-relay", Logger: logger,
		Topology: topology(cfg),
	})
	defer pub.Close()
	ob, err := outbox.New(relayPool, outbox.Config{
		Service:           string(s),
		Publisher:         pub,
		MaxWorkers:        cfg.Relay.Workers,
		FetchCooldown:     cfg.Relay.FetchCooldown,
		FetchPollInterval: cfg.Relay.FetchPollInterval,
		Retention:         cfg.Relay.Retention,
		InboxRetention:    cfg.Relay.InboxRetention,
		PollOnly:          cfg.Relay.PollOnly,
		DirectPublish:     cfg.Relay.DirectPublish,
		DirectGrace:       cfg.Relay.DirectGrace,
		Optional:          optionalKey,
		Metrics:           metrics,
		Logger:            logger,
	})
	if err != nil {
		return err
	}
	if err := reg.Register(ob.Collector()); err != nil {
		return err
	}
	defer reg.Unregister(ob.Collector())

	svc, err := newService(cfg, s, pools, ob, reg, logger)
	if err != nil {
		return err
	}
	ccfg := outbox.ConsumerConfig{
		URL:         cfg.Common.AMQPURL,
		Exchange:    cfg.Common.Exchange,
		Queue:       queueSpec(cfg, s),
		Prefetch:    cfg.Relay.Prefetch,
		Concurrency: cfg.Relay.Concurrency,
		MaxAttempts: cfg.Relay.MaxAttempts,
		BatchSize:   cfg.Relay.BatchSize,
		Check:       lifecycle.CheckEvent,
		Metrics:     metrics,
		Logger:      logger,
	}
	consumer := outbox.NewConsumer(pool, ccfg, svc.consume)
	// Dead letters are parked from the DLQ into the service's database, for operators to replay.
	dead := outbox.NewDeadLetters(pool, outbox.DeadLetterConfig{
		URL: cfg.Common.AMQPURL, Exchange: cfg.Common.Exchange, Queue: ccfg.Queue, Service: string(s),
		Metrics: metrics, Logger: logger,
	})
	deadCollector := dead.Collector()
	if err := reg.Register(deadCollector); err != nil {
		return err
	}
	defer reg.Unregister(deadCollector)

	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		// The consumer's deliveries waiting for the database (a ping can pass while transactions
		// still fail: too many connections, a server shutting down).
		if err := consumer.Err(); err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		if !pub.Connected() || !consumer.Connected() {
			return errors.New("rabbitmq: not connected")
		}
		return nil
	}
	srv := newOpsServer(string(s), sc.Addr, ready, tracing(), reg, logger)
	srv.serveMetrics(reg, cfg.Common.PProf) // an internal address: metrics are served beside the API
	svc.routes(srv.mux, logger)
	httpapi.ServeTimeline(srv.mux, pool, logger) // every service answers for its part of an order's timeline
	httpapi.ServeDeadLetters(srv.mux, dead, logger)
	httpapi.ServeStatus(srv.mux, logger, serviceStatus{name: string(s), ready: ready, outbox: ob, consumer: consumer, dead: dead, breakers: svc.breakers}.read)
	if err := ob.Start(ctx); err != nil {
		return fmt.Errorf("%s: start relay (is the database migrated? run `pizza migrate`): %w", s, err)
	}
	var seeded []store.Store
	if s == db.Store && cfg.Common.Seed && !cfg.production() {
		if seeded, err = seedStores(ctx, pool); err != nil {
			stopRelay(ctx, ob, cfg, logger)
			return fmt.Errorf("%s: register the development stores: %w", s, err)
		}
		if len(seeded) > 0 {
			logger.InfoContext(ctx, "registered the development stores: the store database had none", "stores", len(seeded))
		}
	}
	// Listen only once everything before serving is done, and serve at once: a caller (another
	// replica's balancer, the BFF) never waits on a socket that accepts but does not answer yet
	// while the relay starts.
	ln, err := net.Listen("tcp", sc.Addr)
	if err != nil {
		stopRelay(ctx, ob, cfg, logger)
		return fmt.Errorf("%s: listen on %s: %w", s, sc.Addr, err)
	}
	// Callers in this process (the BFF, the order service's availability check) skip the socket
	// when they call this very server (not when their URL leads elsewhere: a proxy, a replica).
	stopLocal := httpapi.ServeLocally(loopbackURLs(ln.Addr()), srv.http.Handler)
	defer stopLocal()
	var servers serving
	servers.serve(srv, ln)
	logger.InfoContext(ctx, "serving", "addr", ln.Addr().String())
	waitConsumers := goRun(ctx, consumer.Run, dead.Run)
	up(started{name: string(s), ready: ready, stores: seeded})
	var result error
	if err := servers.untilDone(ctx); err != nil {
		result = fmt.Errorf("%s: http: %w", s, err)
	}

	logger.InfoContext(ctx, "shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Common.ShutdownTimeout)
	defer cancel()
	stopLocal() // callers in this process now go over the network, to another replica if there is one
	srv.shutdown(sctx)
	servers.wait()
	stop()
	waitConsumers() // the consumer stops taking deliveries and finishes the ones in flight
	if err := ob.Stop(sctx); err != nil {
		logger.WarnContext(sctx, "relay did not stop cleanly", "err", err)
	}
	return result
}

// stopRelay stops the outbox relay within the shutdown timeout, when the service gives up starting.
func stopRelay(ctx context.Context, ob *outbox.Outbox, cfg config, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Common.ShutdownTimeout)
	defer cancel()
	if err := ob.Stop(ctx); err != nil {
		logger.WarnContext(ctx, "relay did not stop cleanly", "err", err)
	}
}

// queueKeys are the routing keys each service's queue is bound to.
var queueKeys = map[db.Service][]string{
	db.Order:          order.Keys,
	db.Store:          store.Keys,
	db.Delivery:       delivery.Keys,
	db.CustomerCenter: customercenter.Keys,
}

func queueSpec(cfg config, s db.Service) outbox.QueueSpec {
	return outbox.QueueSpec{
		Name: string(s) + ".events" + cfg.Common.QueueSuffix, Keys: queueKeys[s],
		Type: cfg.Common.QueueType, DeliveryLimit: cfg.Common.DeliveryLimit,
	}
}

// topology is every service's queue: each publisher declares them all, so no event is dropped
// for a consumer that has not started yet.
func topology(cfg config) []outbox.QueueSpec {
	out := make([]outbox.QueueSpec, 0, len(db.Services))
	for _, s := range db.Services {
		out = append(out, queueSpec(cfg, s))
	}
	return out
}

// service is what differs between the services: their routes, the events they consume, and
// their breakers.
type service struct {
	routes   func(*http.ServeMux, *slog.Logger)
	consume  outbox.BatchPreparer           // the service's consumer entry point
	breakers func() []httpapi.BreakerStatus // nil: none
}

// newService builds service s on its pools: "main", and for the store "check", its availability
// check's own.
func newService(cfg config, s db.Service, pools map[string]*pgxpool.Pool, ob *outbox.Outbox, reg prometheus.Registerer, logger *slog.Logger) (service, error) {
	pool := pools["main"]
	switch s {
	case db.Order:
		svc := order.New(pool, ob, store.NewClient(cfg.Store.URL), order.Config{
			CheckTimeout:  cfg.OrderTuning.StoreCheckTimeout,
			CancelTimeout: cfg.OrderTuning.StoreCancelTimeout,
			TripAfter:     cfg.OrderTuning.BreakerTripAfter,
			OpenFor:       cfg.OrderTuning.BreakerOpenFor,
			Probes:        cfg.OrderTuning.BreakerProbes,
			Logger:        logger,
		})
		if err := reg.Register(order.OrdersByStatus(pool)); err != nil {
			return service{}, err
		}
		breakers := map[string]func() gobreaker.State{storeAvailability: svc.BreakerState, storeCancel: svc.CancelBreakerState}
		for name, state := range breakers {
			err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "pizza_breaker_state",
				Help: "State of the order service's breakers on its calls to the store service (store-availability: " +
					"the availability check; store-cancel: asking it to cancel an order): 0 closed, 1 half-open, 2 open.",
				ConstLabels: prometheus.Labels{"breaker": name},
			}, func() float64 { return float64(state()) }))
			if err != nil {
				return service{}, err
			}
		}
		states := func() []httpapi.BreakerStatus {
			return []httpapi.BreakerStatus{breakerStatus(storeAvailability, svc.BreakerState()), breakerStatus(storeCancel, svc.CancelBreakerState())}
		}
		return service{routes: svc.Routes, consume: svc.Consume, breakers: states}, nil
	case db.Store:
		svc := store.New(pool, ob).WithCheckPool(pools["check"])
		return service{routes: svc.Routes, consume: svc.Consume}, nil
	case db.Delivery:
		svc := delivery.New(pool, ob)
		return service{routes: svc.Routes, consume: svc.Consume}, nil
	default:
		svc := customercenter.New(pool, ob)
		return service{routes: svc.Routes, consume: svc.Consume}, nil
	}
}

// The order service's breakers, as its metrics and its status name them.
const (
	storeAvailability = "store-availability"
	storeCancel       = "store-cancel"
)

// defaultConnectTimeout bounds a connection attempt to a service's database.
const defaultConnectTimeout = 5 * time.Second

// openPool opens a pool of at most maxConns connections; asyncCommit sets synchronous_commit=off
// on its sessions.
func openPool(ctx context.Context, url string, maxConns int, asyncCommit bool) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	pc.MaxConns = int32(maxConns)
	// PostgreSQL's default random_page_cost (4) prices an index probe as a disk seek. A service's
	// working set is in memory, and batch lookups (order_id = ANY of 64 ids) on tables of a few
	// thousand rows were planned as sequential scans of the whole table: 80,000 tuples a second
	// per table in the bench. 1.1, the usual value for SSDs and cached data, prefers the index.
	// A URL that sets random_page_cost keeps its own.
	if _, set := pc.ConnConfig.RuntimeParams["random_page_cost"]; !set {
		pc.ConnConfig.RuntimeParams["random_page_cost"] = "1.1"
	}
	if asyncCommit {
		pc.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	}
	// A server that drops packets (down behind a firewall, a partition) would hold a connection
	// attempt for the kernel's two minutes: the consumer would not know its database was away,
	// and requests would hang. A URL that sets connect_timeout keeps its own.
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	return pgxpool.NewWithConfig(ctx, pc)
}

// optionalKey names the events nobody needs to hear: the live myPage fan-out goes only to the
// BFF replicas running at that moment, and none running is fine.
func optionalKey(routingKey string) bool { return routingKey == lifecycle.MyPageUpdated }

// opsServer is a component's HTTP server: /healthz and /readyz beside its own routes, and, where
// serveMetrics adds them, /metrics and the profiles.
type opsServer struct {
	http       *http.Server
	cancelBase context.CancelFunc // ends long-lived (websocket) requests at shutdown
	mux        *http.ServeMux
	draining   atomic.Bool
	logger     *slog.Logger
}

func newOpsServer(component, addr string, ready func(context.Context) error, traced bool, reg *prometheus.Registry, logger *slog.Logger) *opsServer {
	o := &opsServer{mux: http.NewServeMux(), logger: logger}
	o.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	o.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if o.draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	base, cancel := context.WithCancel(context.Background())
	o.cancelBase = cancel
	handler := instrument(component, o.mux, httpDuration(reg))
	if traced {
		handler = otelhttp.NewHandler(handler, component)
	}
	o.http = &http.Server{
		BaseContext:       func(net.Listener) context.Context { return base },
		Addr:              addr,
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return o
}

// serveMetrics adds /metrics and, with profiling (PIZZA_PPROF), /debug/pprof/: only ever on an
// internal address (a service's, the BFF's PIZZA_OPS_ADDR).
func (o *opsServer) serveMetrics(reg *prometheus.Registry, profiling bool) {
	if profiling {
		o.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		o.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		o.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		o.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		o.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	// A series that cannot be collected (the outbox backlog, the orders by status: they query the
	// database) is left out, counted in promhttp_metric_handler_errors_total; the rest is served.
	// Failing the whole scrape would hide every series exactly while a database is away.
	o.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError}))
}

// serving is a component's HTTP servers, from the start of their serving until they return.
type serving struct {
	done    chan error
	running int
}

// serve serves o on ln, in a goroutine of its own.
func (s *serving) serve(o *opsServer, ln net.Listener) {
	if s.done == nil {
		s.done = make(chan error, 2)
	}
	s.running++
	go func() { s.done <- o.serve(ln) }()
}

// untilDone waits until ctx ends (nil) or a server fails (its error).
func (s *serving) untilDone(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.done:
		s.running--
		if err == nil {
			err = http.ErrServerClosed // closed before its shutdown: a failure all the same
		}
		return err
	}
}

// wait waits for the servers still serving to return: call it after shutting them down.
func (s *serving) wait() {
	for range s.running {
		<-s.done
	}
}

// goRun runs each of runs until ctx ends, in a goroutine of its own; the function it returns
// waits for them all to return.
func goRun(ctx context.Context, runs ...func(context.Context) error) (wait func()) {
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() { _ = run(ctx) })
	}
	return wg.Wait
}

func (o *opsServer) serve(ln net.Listener) error {
	if err := o.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loopbackURLs are the URLs by which this host reaches a listener: its own address, or for one
// on every interface, 127.0.0.1 and localhost at its port.
func loopbackURLs(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return "http://" + net.JoinHostPort(host, port)
	}
	return "http://127.0.0.1:" + port + ",http://localhost:" + port
}

// shutdown turns readiness false, drains the requests in flight, then ends what is left of
// their contexts.
func (o *opsServer) shutdown(ctx context.Context) {
	o.draining.Store(true)
	if err := o.http.Shutdown(ctx); err != nil {
		o.logger.WarnContext(ctx, "http drain incomplete", "err", err)
	}
	o.cancelBase()
}

// httpDuration is the process's request-latency histogram, registered once per registry.
func httpDuration(reg *prometheus.Registry) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pizza_http_request_duration_seconds",
		Help:    "HTTP requests by component, route pattern and status code.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"component", "route", "code"})
	if err := reg.Register(h); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.HistogramVec)
		}
		panic(err)
	}
	return h
}

// instrument times every request by the route pattern the mux matched (bounded cardinality,
// unlike raw paths). Websocket upgrades are timed until the connection ends.
func instrument(component string, next http.Handler, h *prometheus.HistogramVec) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		h.WithLabelValues(component, route, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code; Unwrap lets http.ResponseController (and websocket
// upgrades through it) reach the real writer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.code = http.StatusSwitchingProtocols
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusWriter) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }
