package db

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable reports whether err says that the database could not be reached or would not do
// the work at all, whatever the work was: a connection that could not be made (refused, timed
// out, DNS, TLS, authentication: any *pgconn.ConnectError) or that broke (reset, EOF, closed),
// a server that ended the session or refuses new ones (SQLSTATE class 08, 57P01 admin shutdown,
// 57P02 crash shutdown, 57P03 cannot connect now, 57P05 idle session timeout, 53300 too many
// connections), or one that did not answer in time (pgconn.Timeout). The same work may succeed
// once the database is back; the error says nothing about the work itself.
//
// A context cancelled by the caller is not: the caller went away or is shutting down.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case len(code) == 5 && code[:2] == "08": // connection exception
			return true
		case code == "57P01", code == "57P02", code == "57P03", code == "57P05", code == "53300":
			return true
		}
		return false // the server answered, and the answer was about the work
	}
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// Transient reports whether err is worth trying again unchanged, the same work on a fresh
// transaction: the database is Unavailable, or the transaction lost a race that PostgreSQL
// resolves by failing one side (40001 serialization failure, 40P01 deadlock detected). Anything
// else (a constraint violation, a bad statement, an error of the caller's own) is about the work
// and fails the same way again.
func Transient(err error) bool {
	return Unavailable(err) || Conflict(err)
}

// Conflict reports whether err is a serialization failure (40001) or a deadlock (40P01): the
// transaction was rolled back so that a concurrent one could go on.
func Conflict(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}
