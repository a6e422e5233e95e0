// Package dbtest gives each test its own PostgreSQL database, cloned from a migrated template
// (a few hundred milliseconds; NewDatabases makes several at once).
//
// What it leaves on the server, and for how long:
//
//   - pizza_test_<run>_<service>_<random> (NewDatabase, NewDatabases) and pizza_test_<run>_empty_<random>
//     (NewEmptyURL): one test's database, dropped when the test ends. <run> names the test
//     process, which holds an advisory lock on it while it lives; a process that died before its
//     cleanups ran (Ctrl-C, a timeout's panic, kill -9) leaves its databases behind, and the next
//     test process to start drops them, once it sees their lock free.
//   - pizza_tmpl_<service>_<fingerprint>: the migrated template, one a service, kept between
//     runs and reused by name; <fingerprint> hashes the migrations, so changing one builds a new
//     template, and building one drops the service's templates of other fingerprints.
//   - pizza_txtest_<service>_<fingerprint>: left by earlier versions (a rollback-only clone
//     nothing uses any more); building a template drops them.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
)

// DefaultServerURL is where tests find PostgreSQL unless DATABASE_URL says otherwise.
const DefaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL is the PostgreSQL server the tests use.
func ServerURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultServerURL
}

var templates sync.Map // db.Service -> *templateOnce

type templateOnce struct {
	once sync.Once
	name string
	err  error
}

// NewDatabase creates a fresh database for the service, cloned from a migrated template, and
// drops it when the test ends. It returns the database's URL and a pool on it.
func NewDatabase(t testing.TB, s db.Service) (string, *pgxpool.Pool) {
	t.Helper()
	dbs := NewDatabases(t, s)
	return dbs[s].URL, dbs[s].Pool
}

// Database is a test's own database: its URL and a pool on it.
type Database struct {
	URL  string
	Pool *pgxpool.Pool
}

// NewDatabases is NewDatabase for each of the services, the clones made at once: PostgreSQL takes
// a few hundred milliseconds for each, mostly waiting on the disk.
func NewDatabases(t testing.TB, services ...db.Service) map[db.Service]Database {
	t.Helper()
	ctx := context.Background()
	admin := adminConn(t)
	clone := func(name string, s db.Service, template string) error {
		_, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize()))
		return err
	}
	names := make([]string, len(services))
	tmpls := make([]string, len(services))
	for i, s := range services {
		names[i] = testDatabaseName(t, string(s))
		tmpls[i] = template(t, s)
		t.Cleanup(func() { dropTestDatabase(t, names[i]) }) // after the pool below is closed
	}
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, s := range services {
		wg.Go(func() { errs[i] = clone(names[i], s, tmpls[i]) })
	}
	wg.Wait()

	out := make(map[db.Service]Database, len(services))
	for i, s := range services {
		err := errs[i]
		if pgErrCode(err) == "3D000" { // invalid_catalog_name: the template does not exist
			// Another checkout's test process, built from other migrations, dropped this template
			// as stale after this process found it: build it again.
			templates.Delete(s)
			err = clone(names[i], s, template(t, s))
		}
		require.NoError(t, err, "clone template database")
		dbURL, err := db.WithDatabase(ServerURL(), names[i])
		require.NoError(t, err)
		pc, err := pgxpool.ParseConfig(dbURL)
		require.NoError(t, err)
		trimIdle(pc)
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		out[s] = Database{URL: dbURL, Pool: pool}
	}
	return out
}

// trimIdle makes a pool give connections idle for a second back to the server (pgxpool keeps
// them for 30 minutes by default): tests run many databases at once against its 100 connections.
func trimIdle(pc *pgxpool.Config) {
	pc.MaxConnIdleTime, pc.HealthCheckPeriod = time.Second, time.Second
}

func pgErrCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func dropTestDatabase(t testing.TB, name string) {
	_, err := adminConn(t).Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	if err != nil {
		t.Logf("drop test database %s: %v", name, err)
	}
}

// The test process's run: a name its databases carry, and an advisory lock on it held by a
// connection of its own for as long as the process lives (PostgreSQL releases it when the
// connection goes, however the process ends). A run whose lock is free is over, so its databases
// are leftovers: the first test database of each process drops them.
var (
	runOnce sync.Once
	runID   string
	runConn *pgx.Conn
	runErr  error
)

// runLockClass is the first key of the run locks (pg_advisory_lock(int, int)); the second is hashtext(run).
const runLockClass = 0x70697a7a // "pizz"

// testDatabaseRE matches the databases of a run, the run being its first group.
var testDatabaseRE = regexp.MustCompile(`^pizza_test_([0-9a-f]{8})_`)

func testDatabaseName(t testing.TB, kind string) string {
	t.Helper()
	runOnce.Do(func() { runErr = startRun() })
	require.NoError(t, runErr, "take this test process's run lock")
	return fmt.Sprintf("pizza_test_%s_%s_%s", runID, kind, randomHex(6))
}

func startRun() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runID = randomHex(4)
	conn, err := pgx.Connect(ctx, mustWith("postgres"))
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL at %s (is it running? `make test` starts it): %w", ServerURL(), err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, runLockClass, runID); err != nil {
		conn.Close(ctx)
		return err
	}
	runConn = conn // held until the process exits
	return dropLeftovers(ctx, conn)
}

// dropLeftovers drops the databases of runs that are over: those whose lock it can take.
func dropLeftovers(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'pizza\_test\_%' ORDER BY datname`)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	byRun := map[string][]string{}
	for _, n := range names {
		if m := testDatabaseRE.FindStringSubmatch(n); m != nil && m[1] != runID {
			byRun[m[1]] = append(byRun[m[1]], n)
		}
	}
	for run, dbs := range byRun {
		var over bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, runLockClass, run).Scan(&over); err != nil {
			return err
		}
		if !over {
			continue // its process is still running
		}
		for _, n := range dbs {
			// Best effort: another process may be dropping it at the same time.
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, runLockClass, run); err != nil {
			return err
		}
	}
	return nil
}

// template returns the name of a migrated template database for the service, building it once
// per migration fingerprint. Test binaries run in parallel, so building is serialised across
// processes with an advisory lock, and a template only gets its final name once complete.
func template(t testing.TB, s db.Service) string {
	t.Helper()
	v, _ := templates.LoadOrStore(s, &templateOnce{})
	to := v.(*templateOnce)
	to.once.Do(func() { to.name, to.err = buildTemplate(s) })
	require.NoError(t, to.err, "build template database for %s", s)
	return to.name
}

func buildTemplate(s db.Service) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fp, err := fingerprint()
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("pizza_tmpl_%s_%s", s, fp)

	conn, err := pgx.Connect(ctx, mustWith("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL at %s (is it running? `make test` starts it): %w", ServerURL(), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext('pizza-dbtest-template'))`); err != nil {
		return "", err
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtext('pizza-dbtest-template'))`) //nolint:errcheck

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize()+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{building}.Sanitize()); err != nil {
		return "", err
	}
	if err := db.Migrate(ctx, mustWith(building), s, nil); err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s",
		pgx.Identifier{building}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		return "", err
	}
	// Templates of other migration sets are dead weight; drop them, and the rollback-only clones
	// earlier versions made (pizza_txtest_), unless in use (no FORCE: a test process of another
	// checkout may be using one; it is dropped by a later build). A template is only connected to while it is built, under
	// its _building name, so dropping it takes no FORCE either; a process that still clones
	// it builds it again (NewDatabase).
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database
		WHERE (datname LIKE $1 OR datname LIKE $2) AND datname NOT IN ($3, $4)`,
		fmt.Sprintf("pizza_tmpl_%s_%%", s), fmt.Sprintf("pizza_txtest_%s_%%", s),
		name, "pizza_txtest"+strings.TrimPrefix(name, "pizza_tmpl"))
	if err != nil {
		return "", err
	}
	old, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for _, o := range old {
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{o}.Sanitize())
	}
	return name, nil
}

// fingerprint hashes every embedded migration and River's migration list, so a changed migration
// builds a new template instead of cloning a stale one.
func fingerprint() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(db.MigrationsFS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(db.MigrationsFS(), path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%s\x00", path, b)
		return nil
	})
	if err != nil {
		return "", err
	}
	m, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err != nil {
		return "", err
	}
	for _, v := range m.AllVersions() {
		fmt.Fprintf(h, "river%d\x00%s\x00", v.Version, v.SQLUp)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func adminConn(t testing.TB) *pgxpool.Pool {
	adminOnce.Do(func() {
		var pc *pgxpool.Config
		if pc, adminErr = pgxpool.ParseConfig(mustWith("postgres")); adminErr == nil {
			trimIdle(pc)
			adminPool, adminErr = pgxpool.NewWithConfig(context.Background(), pc)
		}
	})
	require.NoError(t, adminErr)
	return adminPool
}

var (
	adminOnce sync.Once
	adminPool *pgxpool.Pool
	adminErr  error
)

func connectServer(t testing.TB) *pgx.Conn {
	conn, err := pgx.Connect(context.Background(), mustWith("postgres"))
	require.NoError(t, err)
	return conn
}

func mustWith(name string) string {
	u, err := db.WithDatabase(ServerURL(), name)
	if err != nil {
		panic(err)
	}
	return u
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewEmptyURL returns the URL of a database that does not exist yet (for tests of creating and
// migrating one), and drops it, if created, when the test ends.
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	name := testDatabaseName(t, "empty")
	t.Cleanup(func() { dropTestDatabase(t, name) })
	return mustWith(name)
}

// Schema describes a database's schema as sorted text: tables and columns, indexes, and the
// applied migration versions, so two databases can be compared for equality.
func Schema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	const q = `
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'river migration ' || version::text FROM river_migration
ORDER BY 1`
	rows, err := pool.Query(context.Background(), q)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// Interleave runs first in a transaction left open, then second in its own transaction, waits
// until second is blocked on a lock first holds, commits first, and returns second's outcome
// (after its commit). It makes a race between two transactions happen the same way every time.
func Interleave(t testing.TB, pool *pgxpool.Pool, first, second func(pgx.Tx) error) error {
	t.Helper()
	ctx := context.Background()
	tx1, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx1.Rollback(ctx) //nolint:errcheck
	require.NoError(t, first(tx1))
	done := make(chan error, 1)
	go func() { done <- pgx.BeginFunc(ctx, pool, second) }()
	require.Eventually(t, func() bool {
		var waiting bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND datname = current_database())`).Scan(&waiting))
		return waiting
	}, 10*time.Second, time.Millisecond, "the second transaction never waited on the first")
	require.NoError(t, tx1.Commit(ctx))
	return <-done
}

// NewOneConnPool is NewDatabase with a pool of a single connection: for tests of what a
// connection keeps between statements (PostgreSQL's cached plans are per connection). Its
// connection is never let go for being idle.
func NewOneConnPool(t testing.TB, s db.Service) *pgxpool.Pool {
	t.Helper()
	url, _ := NewDatabase(t, s)
	pc, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	pc.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// SeqScans is how many sequential scans table has had, the calling connection's own included
// (its pending counts are flushed first): pool should be a NewOneConnPool.
func SeqScans(t testing.TB, pool *pgxpool.Pool, table string) int64 {
	t.Helper()
	return scanStat(t, pool, `SELECT seq_scan FROM pg_stat_user_tables WHERE relname = $1`, table)
}

// IndexScans is how many scans the index has had, counted as SeqScans counts.
func IndexScans(t testing.TB, pool *pgxpool.Pool, index string) int64 {
	t.Helper()
	return scanStat(t, pool, `SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1`, index)
}

// scanStat reads one count of the statistics views for name, the connection's pending counts
// flushed first.
func scanStat(t testing.TB, pool *pgxpool.Pool, query, name string) (n int64) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, query, name).Scan(&n))
	return n
}

// RequireIndexAfterGrowth checks that a service's batch statements keep finding their rows
// through an index as table grows from empty, as it does in production: a prepared statement that
// settled on a generic plan while the table was tiny would read the whole table on every batch
// (db.CustomPlans is what prevents it). pass applies one batch, fresh rows each time, and returns
// the check of what it did, which runs once the scans are counted (so it may scan as it likes).
// pass runs more than five times on the small table (where PostgreSQL settles on a generic plan),
// then grow fills the table, with no ANALYZE to tell a cached plan, and the next pass must not
// scan table. pool must be a NewOneConnPool: plans are per connection.
func RequireIndexAfterGrowth(t testing.TB, pool *pgxpool.Pool, table, grow string, pass func() (check func())) {
	t.Helper()
	ctx := context.Background()
	backend := func() (pid int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		return pid
	}
	first := backend()
	for range 8 {
		pass()()
	}
	_, err := pool.Exec(ctx, grow)
	require.NoError(t, err, "grow %s", table)
	require.Equal(t, first, backend(), "one connection all along: its cached plans are what is tested")
	before := SeqScans(t, pool, table)
	check := pass()
	require.Zero(t, SeqScans(t, pool, table)-before, "a batch read the whole %s table", table)
	check()
}
