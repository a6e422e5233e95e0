package db_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// The classifier on the errors pgx really returns, each produced against the real PostgreSQL (or
// a port where nothing listens, or a proxy that cuts the connection).
func TestTransientClassifiesRealErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	serverURL := dbtest.ServerURL()
	connect := func(t *testing.T, u string) *pgx.Conn {
		conn, err := pgx.Connect(ctx, u)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	// raise has the server raise an error with the given SQLSTATE.
	raise := func(code string) func(t *testing.T) error {
		return func(t *testing.T) error {
			_, err := connect(t, serverURL).Exec(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '%s'; END $$`, code))
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			require.Equal(t, code, pgErr.Code)
			return err
		}
	}
	freePort := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		return addr
	}
	const (
		neither = iota
		unavailable
		conflict
	)
	cases := []struct {
		name string
		err  func(t *testing.T) error
		want int
	}{
		{"nil", func(*testing.T) error { return nil }, neither},
		{"plain error", func(*testing.T) error { return errors.New("boom") }, neither},
		{"no rows", func(t *testing.T) error {
			var n int
			return connect(t, serverURL).QueryRow(ctx, `SELECT 1 WHERE false`).Scan(&n)
		}, neither},
		{"syntax error 42601", func(t *testing.T) error {
			_, err := connect(t, serverURL).Exec(ctx, `SELEC 1`)
			return err
		}, neither},
		{"division by zero 22012", func(t *testing.T) error {
			_, err := connect(t, serverURL).Exec(ctx, `SELECT 1/0`)
			return err
		}, neither},
		{"unique violation 23505", raise("23505"), neither},
		{"raise P0001", raise("P0001"), neither},
		{"query canceled 57014", raise("57014"), neither},
		{"connection failure 08006", raise("08006"), unavailable},
		{"connection exception 08000", raise("08000"), unavailable},
		{"admin shutdown 57P01", raise("57P01"), unavailable},
		{"crash shutdown 57P02", raise("57P02"), unavailable},
		{"cannot connect now 57P03", raise("57P03"), unavailable},
		{"idle session timeout 57P05", raise("57P05"), unavailable},
		{"too many connections 53300", raise("53300"), unavailable},
		{"serialization failure 40001", raise("40001"), conflict},
		{"deadlock 40P01", raise("40P01"), conflict},
		{"wrapped with %w", func(t *testing.T) error { return fmt.Errorf("apply: %w", raise("57P01")(t)) }, unavailable},
		{"connection refused (ConnectError)", func(t *testing.T) error {
			u, err := url.Parse(serverURL)
			require.NoError(t, err)
			u.Host = freePort(t)
			_, err = pgx.Connect(ctx, u.String())
			var connectErr *pgconn.ConnectError
			require.ErrorAs(t, err, &connectErr)
			return err
		}, unavailable},
		{"wrong database (ConnectError)", func(t *testing.T) error {
			u, err := url.Parse(serverURL)
			require.NoError(t, err)
			u.Path = "/pizza_no_such_database"
			_, err = pgx.Connect(ctx, u.String())
			var connectErr *pgconn.ConnectError
			require.ErrorAs(t, err, &connectErr)
			return err
		}, unavailable},
		{"dial refused (net.OpError)", func(t *testing.T) error {
			_, err := net.Dial("tcp", freePort(t))
			var opErr *net.OpError
			require.ErrorAs(t, err, &opErr)
			return err
		}, unavailable},
		{"session terminated", func(t *testing.T) error {
			conn := connect(t, serverURL)
			_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
			require.Error(t, err)
			return err
		}, unavailable},
		{"conn closed", func(t *testing.T) error {
			conn := connect(t, serverURL)
			require.NoError(t, conn.Close(ctx))
			_, err := conn.Exec(ctx, `SELECT 1`)
			require.ErrorIs(t, err, pgconn.ErrConnClosed)
			return err
		}, unavailable},
		{"connection cut (EOF, reset or broken pipe)", func(t *testing.T) error {
			u, err := url.Parse(serverURL)
			require.NoError(t, err)
			proxy := outboxtest.NewProxy(t, u.Host)
			conn := connect(t, proxy.URL(t, serverURL))
			require.Equal(t, 1, proxy.Cut())
			_, err = conn.Exec(ctx, `SELECT 1`)
			require.Error(t, err)
			return err
		}, unavailable},
		{"unexpected EOF", func(*testing.T) error { return fmt.Errorf("receive: %w", io.ErrUnexpectedEOF) }, unavailable},
		{"connection cut mid-statement", func(t *testing.T) error {
			u, err := url.Parse(serverURL)
			require.NoError(t, err)
			proxy := outboxtest.NewProxy(t, u.Host)
			name := fmt.Sprintf("pizza-cut-%d", time.Now().UnixNano())
			conn := connect(t, proxy.URL(t, serverURL)+"&application_name="+name)
			done := make(chan error, 1)
			go func() { _, err := conn.Exec(ctx, `SELECT pg_sleep(30)`); done <- err }()
			admin := connect(t, serverURL)
			require.Eventually(t, func() bool {
				var n int
				require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE application_name = $1 AND query LIKE '%pg_sleep%'`, name).Scan(&n))
				return n == 1
			}, 10*time.Second, 5*time.Millisecond)
			proxy.Cut()
			err = <-done
			require.Error(t, err) // pgx 5.12 answers "conn closed" here
			_, _ = admin.Exec(ctx, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, name)
			return err
		}, unavailable},
		{"statement outlives its deadline (pgconn.Timeout)", func(t *testing.T) error {
			conn := connect(t, serverURL)
			tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, err := conn.Exec(tctx, `SELECT pg_sleep(10)`)
			require.True(t, pgconn.Timeout(err), "%v", err)
			return err
		}, unavailable},
		{"cancelled by the caller", func(t *testing.T) error {
			conn := connect(t, serverURL)
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := conn.Exec(cctx, `SELECT 1`)
			require.ErrorIs(t, err, context.Canceled)
			return err
		}, neither},
		{"connect cancelled by the caller", func(t *testing.T) error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := pgx.Connect(cctx, serverURL)
			require.ErrorIs(t, err, context.Canceled)
			return err
		}, neither},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.err(t)
			require.Equal(t, c.want == unavailable, db.Unavailable(err), "Unavailable(%v)", err)
			require.Equal(t, c.want == conflict, db.Conflict(err), "Conflict(%v)", err)
			require.Equal(t, c.want != neither, db.Transient(err), "Transient(%v)", err)
		})
	}
}
