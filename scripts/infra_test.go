// Package scripts_test runs the repository's shell scripts against real servers.
package scripts_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// infra-up.sh tells a PostgreSQL that is running but full ("sorry, too many clients already")
// from one that is not running: it never tries to start the first, and says which it is.
//
// The test runs its own PostgreSQL (initdb into a temporary directory, on a free loopback port,
// max_connections=2) so that filling it up disturbs no one. The commands the script would use to
// start a server (pg_ctlcluster, docker, apt-get) are replaced on PATH by stand-ins that only
// record that they were called, so the machine's own cluster is never touched.
func TestInfraUpTellsAFullPostgreSQLFromAStoppedOne(t *testing.T) {
	t.Parallel()
	pg := startPrivatePostgres(t)

	fakeBin := t.TempDir()
	started := filepath.Join(fakeBin, "started")
	for _, name := range []string{"pg_ctlcluster", "docker", "apt-get"} {
		script := "#!/bin/sh\necho \"" + name + " $*\" >> " + started + "\nexit 1\n"
		require.NoError(t, os.WriteFile(filepath.Join(fakeBin, name), []byte(script), 0o755))
	}
	runInfraUp := func() (string, error) {
		cmd := exec.Command("./infra-up.sh")
		cmd.Env = append(os.Environ(),
			"PATH="+fakeBin+":"+os.Getenv("PATH"),
			"DATABASE_URL="+pg.url,
			"INFRA_WAIT_SECONDS=3",
		)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	startCalls := func() string {
		b, err := os.ReadFile(started)
		if os.IsNotExist(err) {
			return ""
		}
		require.NoError(t, err)
		return string(b)
	}

	out, err := runInfraUp()
	require.NoError(t, err, out)
	require.Contains(t, out, "PostgreSQL and RabbitMQ are up")

	// Full: every connection slot taken. The script's own psql session may still hold a slot for
	// a moment (its backend exits after the client has), so each is taken once it is free.
	ctx := context.Background()
	for range 2 {
		var c *pgx.Conn
		require.Eventually(t, func() bool {
			c, err = pgx.Connect(ctx, pg.url)
			return err == nil || !strings.Contains(err.Error(), "too many clients")
		}, 10*time.Second, 10*time.Millisecond, "a slot of the private server never came free")
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	_, err = pgx.Connect(ctx, pg.url)
	require.ErrorContains(t, err, "too many clients", "the private server is full")

	out, err = runInfraUp()
	require.Error(t, err, out)
	require.Contains(t, out, "is running but")
	require.Contains(t, out, "too many clients")
	require.NotContains(t, out, "not running")
	t.Logf("full:\n%s", out)
	require.Empty(t, startCalls(), "a running server must not be started again:\n%s", out)

	// Stopped: nothing answers at the address, so the script tries to start it.
	pg.stop(t)
	out, err = runInfraUp()
	require.Error(t, err, out)
	require.Contains(t, out, "is not running")
	t.Logf("stopped:\n%s", out)
	require.Contains(t, startCalls(), "pg_ctlcluster", out)
}

type privatePostgres struct {
	url string
	cmd *exec.Cmd
}

// startPrivatePostgres runs a throwaway PostgreSQL server of two connections on a free loopback
// port, as the postgres user when the test runs as root (PostgreSQL refuses to run as root).
func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bin := pgBinDir(t)
	var cred *syscall.Credential
	dir, err := os.MkdirTemp("", "pizza-infra-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root without a postgres user to run a private PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return cmd
	}
	data := filepath.Join(dir, "data")
	out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync").CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)

	port := freePort(t)
	cmd := run("postgres", "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=2",
		"-c", "superuser_reserved_connections=0", "-c", "fsync=off")
	logFile, err := os.Create(filepath.Join(t.TempDir(), "postgres.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	pg := &privatePostgres{url: "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable", cmd: cmd}
	t.Cleanup(func() { pg.stop(t) })

	require.Eventually(t, func() bool {
		c, err := pgx.Connect(context.Background(), pg.url)
		if err != nil {
			return false
		}
		c.Close(context.Background())
		return true
	}, time.Minute, 100*time.Millisecond, "the private PostgreSQL never accepted a connection; its log: %s", logFile.Name())
	return pg
}

// stop shuts the server down (fast shutdown) and waits for it to exit.
func (pg *privatePostgres) stop(t *testing.T) {
	if pg.cmd.ProcessState != nil {
		return
	}
	_ = pg.cmd.Process.Signal(syscall.SIGINT)
	_ = pg.cmd.Wait()
}

// pgBinDir finds the PostgreSQL server binaries (initdb, postgres), or skips the test.
func pgBinDir(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		t.Skip("no PostgreSQL server binaries (initdb) on this machine")
	}
	return filepath.Dir(matches[len(matches)-1])
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
