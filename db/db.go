// Package db owns the services' databases: their names, their embedded plain-SQL migrations, and
// creating and migrating them (River's tables included) safely from several processes at once.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// Service names one service that owns a database.
type Service string

// The services that own a database.
const (
	Order          Service = "order"
	Store          Service = "store"
	Delivery       Service = "delivery"
	CustomerCenter Service = "customercenter"
)

// CustomPlan, passed as a statement's first argument, has PostgreSQL plan each run of it with its
// real arguments: pgx sends it as the unnamed statement (its description cached), which is never
// planned generically. A prepared statement may instead settle, after five runs, on a generic
// plan costed against its tables as they were then, and a service starts on empty tables: its
// batch lookups (id = ANY($1), joins with unnest) were planned as sequential scans and stayed so
// while the tables grew, a third of PostgreSQL's CPU in the bench. Statements whose plan depends
// on how big a table is take CustomPlan; the rest (River's, single-row inserts, upserts) keep
// prepared generic plans: planning every statement (plan_cache_mode=force_custom_plan, as before)
// cost a quarter of PostgreSQL's statement time, most of it in River's queries.
const CustomPlan = pgx.QueryExecModeCacheDescribe

// CustomPlans, run in a transaction, has PostgreSQL plan each of the transaction's later
// statements with its real arguments, as CustomPlan does for one statement: for statements sent
// in a batch, which pgx sends prepared, so that CustomPlan cannot apply to them.
const CustomPlans = `SET LOCAL plan_cache_mode = force_custom_plan`

// Services lists every service with a database, in a stable order.
var Services = []Service{Order, Store, Delivery, CustomerCenter}

// ParseService returns the Service called name, or an error naming the valid ones.
func ParseService(name string) (Service, error) {
	for _, s := range Services {
		if string(s) == name {
			return s, nil
		}
	}
	return "", fmt.Errorf("unknown service %q (want one of order, store, delivery, customercenter)", name)
}

// DatabaseName is the database the service gets on a shared server.
func (s Service) DatabaseName() string { return "pizza_" + string(s) }

//go:embed migrations
var migrations embed.FS

// migration sets applied to every service database, in this order, each with its own version table.
// "outbox" holds the consumer inbox; the service's own set follows (absent until it has tables).
func migrationSets(s Service) []struct{ dir, table string } {
	return []struct{ dir, table string }{
		{"migrations/outbox", "pizza_schema_outbox"},
		{"migrations/" + string(s), "pizza_schema_" + string(s)},
	}
}

// MigrationsFS exposes the embedded migrations, for tests that fingerprint them.
func MigrationsFS() fs.FS { return migrations }

// WithDatabase returns serverURL with its database name replaced by name.
func WithDatabase(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("database url must start with postgres://, got %q", u.Scheme+"://")
	}
	u.Path = "/" + name
	return u.String(), nil
}

// EnsureDatabase creates the database named by databaseURL when it does not exist, connecting to
// the server's maintenance database (postgres) to do it. Safe to call from several processes.
func EnsureDatabase(ctx context.Context, databaseURL string) error {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return errors.New("database url names no database")
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	// A concurrent creator wins the race with duplicate_database, or with unique_violation on
	// pg_database's name index when both passed the existence check at once.
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Migrate brings the service's database at databaseURL up to date: River's tables, the outbox
// inbox, then the service's own migrations. A session advisory lock serialises concurrent
// migrators, so running it from several processes at once is safe and idempotent.
func Migrate(ctx context.Context, databaseURL string, s Service, logger *slog.Logger) error {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("open %s database: %w", s, err)
	}
	defer pool.Close()
	return MigratePool(ctx, pool, s, logger)
}

// MigratePool is Migrate on an open pool.
func MigratePool(ctx context.Context, pool *pgxpool.Pool, s Service, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lockConn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to %s database: %w", s, err)
	}
	defer lockConn.Release()
	key := advisoryKey("pizza-migrate")
	// Wait by polling, not in pg_advisory_lock: a session blocked in that statement holds a
	// snapshot, and the holder's CREATE INDEX CONCURRENTLY waits for every older snapshot of the
	// database, so the two would wait for each other for ever.
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var got bool
		if err := lockConn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("take migration lock: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	defer func() {
		// Unlock on a context that survives cancellation; if it still fails the session ends
		// with the connection, which releases the lock anyway.
		if _, err := lockConn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			lockConn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("migrate river tables: %w", err)
	}
	for _, v := range res.Versions {
		logger.InfoContext(ctx, "applied river migration", "service", s, "version", v.Version)
	}

	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	for _, set := range migrationSets(s) {
		if err := gooseUp(ctx, sqlDB, set.dir, set.table, s, logger); err != nil {
			return err
		}
	}
	return nil
}

func gooseUp(ctx context.Context, sqlDB *sql.DB, dir, table string, s Service, logger *slog.Logger) error {
	if _, err := fs.Stat(migrations, dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	sub, err := fs.Sub(migrations, dir)
	if err != nil {
		return err
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithTableName(table), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations %s: %w", dir, err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations %s to %s: %w", dir, s, err)
	}
	for _, r := range results {
		logger.InfoContext(ctx, "applied migration", "service", s, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

func advisoryKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}
