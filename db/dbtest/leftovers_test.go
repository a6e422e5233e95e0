package dbtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
)

// A test process killed before its cleanups ran (kill -9; Ctrl-C and a timeout's panic skip them
// too) leaves its databases behind; the next test process drops them, and never the databases
// of a process still running.
func TestKilledRunsDatabasesAreDroppedByTheNext(t *testing.T) {
	t.Parallel()
	// A live run: this process, which made one database.
	_, _ = NewDatabase(t, db.Store)
	live := testDatabaseName(t, "empty")
	_, err := adminConn(t).Exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{live}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() { dropTestDatabase(t, live) })

	// A run killed mid-test: a child test process makes a database, says its name, and is killed.
	child := helper(t, "hold")
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	stdin, err := child.StdinPipe() // held open: the child waits on it
	require.NoError(t, err)
	defer stdin.Close()
	require.NoError(t, child.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the child never said its database")
	killed := strings.TrimSpace(strings.TrimPrefix(line, "database "))
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	t.Cleanup(func() { dropTestDatabase(t, killed) })
	require.True(t, exists(t, killed), "a killed run's cleanups never ran, so %s is left", killed)
	// PostgreSQL ends the killed process's connections, and so frees its run lock, once it reads
	// their end: wait for that.
	run := testDatabaseRE.FindStringSubmatch(killed)[1]
	conn := connectServer(t)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		var free bool
		require.NoError(t, conn.QueryRow(context.Background(),
			`SELECT pg_try_advisory_lock($1, hashtext($2))`, runLockClass, run).Scan(&free))
		if free {
			_, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1, hashtext($2))`, runLockClass, run)
			require.NoError(t, err)
		}
		return free
	}, 30*time.Second, 20*time.Millisecond, "the killed run's lock was never freed")

	// The next test process drops it as it starts, and leaves this live run's alone.
	next, err := helper(t, "start").CombinedOutput()
	require.NoError(t, err, "%s", next)
	require.False(t, exists(t, killed), "the next run dropped the killed run's %s", killed)
	require.True(t, exists(t, live), "a live run's database is kept")
}

// helper runs this test binary as another test process doing mode (see TestHelperProcess).
func helper(t *testing.T, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DBTEST_HELPER="+mode)
	return cmd
}

// TestHelperProcess is not a test: TestKilledRunsDatabasesAreDroppedByTheNext runs it in a child.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("DBTEST_HELPER") {
	case "hold": // make a database, say its name, wait to be killed
		dbURL, _ := NewDatabase(t, db.Store)
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		fmt.Printf("database %s\n", strings.TrimPrefix(u.Path, "/"))
		_, _ = io.Copy(io.Discard, os.Stdin) // killed while waiting here; never reaches its cleanups
		t.Fatal("the parent closed stdin instead of killing this helper")
	case "start": // start a run, which drops the leftovers of runs that are over
		_ = testDatabaseName(t, "empty")
	default:
		t.Skip("helper for TestKilledRunsDatabasesAreDroppedByTheNext")
	}
}

func exists(t *testing.T, name string) bool {
	var ok bool
	require.NoError(t, adminConn(t).QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&ok))
	return ok
}

// A template this process found but that is gone when it clones it (a test process of another
// checkout, built from other migrations, dropped it as stale) is built again, not a failure.
func TestCloneOfAVanishedTemplateBuildsItAgain(t *testing.T) {
	// Not parallel: it swaps the delivery template's cached name for one that does not exist.
	gone := &templateOnce{name: "pizza_tmpl_delivery_000000000000"}
	gone.once.Do(func() {})
	real := template(t, db.Delivery)
	templates.Store(db.Delivery, gone)
	t.Cleanup(func() { templates.Delete(db.Delivery) })

	_, pool := NewDatabase(t, db.Delivery)
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM deliveries`).Scan(&n))
	require.Equal(t, real, template(t, db.Delivery), "the template is the current one again")
}
