package order

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
)

// A group whose COMMIT reached the server and committed, but whose answer was lost (the
// connection dropped), must not be written again placement by placement: key-less placements
// would each become two orders, one of them never told to anybody. Its callers get the error, as
// a lone caller would, and each order exists once. (Found in review: the first group commit
// retried every failed group.)
//
// The lost answer is made with a net.Conn that, after a COMMIT of a transaction that bound four
// or more statements (a group, not a single placement), lets the server process it and then
// drops the connection before the client reads the answer. The pool parses every statement
// anew (pgx's cached-describe mode), so the connection sees each statement's text, the COMMIT
// that goes out with the events' insert included.
func TestAmbiguousGroupCommitIsNotWrittenTwice(t *testing.T) {
	ctx := context.Background()
	url, direct := dbtest.NewDatabase(t, db.Order)

	var armed atomic.Bool
	pc, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &lossyConn{Conn: c, armed: &armed}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ob, err := outbox.New(pool, outbox.Config{Service: "order"})
	require.NoError(t, err)
	open := storeFunc(func(context.Context, string) (bool, error) { return true, nil })
	s := New(pool, ob, open, Config{})

	waitState := func(queued, leaders int) { t.Helper(); waitGroupState(t, s, queued, leaders) }
	block := func(key string) pgx.Tx { return holdKey(t, direct, key) }
	type result struct {
		o   Order
		err error
	}
	place := func(in PlaceInput) <-chan result {
		out := make(chan result, 1)
		go func() { o, err := s.Place(ctx, in); out <- result{o, err} }()
		return out
	}

	// Hold both leader slots, so that the key-less placements queue up and form one group.
	t1, t2 := block("k1"), block("k2")
	a := place(PlaceInput{CustomerID: "c-block", Pizza: "불고기", Qty: 1, Region: "강남구", IdempotencyKey: "k1"})
	waitState(0, 1)
	c := place(PlaceInput{CustomerID: "c-block", Pizza: "불고기", Qty: 1, Region: "강남구", IdempotencyKey: "k2"})
	waitState(0, 2)
	const n = 5
	var results []<-chan result
	for i := range n {
		results = append(results, place(PlaceInput{CustomerID: fmt.Sprintf("c-%d", i), Pizza: "불고기", Qty: 1, Region: "강남구"}))
		waitState(i+1, 2)
	}
	armed.Store(true) // the next group's COMMIT loses its reply
	require.NoError(t, t1.Commit(ctx))
	require.NoError(t, t2.Commit(ctx))
	require.NoError(t, (<-a).err)
	require.NoError(t, (<-c).err)
	for i, r := range results {
		res := <-r
		require.Error(t, res.err, "placement %d: its group's outcome is unknown to the service", i)
	}
	require.False(t, armed.Load(), "the group's commit reply was dropped")

	var orders, placed int
	require.NoError(t, direct.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_id LIKE 'c-_'`).Scan(&orders))
	require.NoError(t, direct.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE type = $1`, lifecycle.OrderPlaced).Scan(&placed))
	t.Logf("%d key-less placements -> %d orders, %d order.placed events", n, orders, placed)
	require.Equal(t, n, orders, "each placement is one order")
	require.Equal(t, n, placed, "each order is announced once")
}

// lossyConn drops the connection after forwarding a COMMIT of a transaction that bound at least
// four statements before it (BEGIN, five inserts and the events' insert for the group; three for
// a single placement), once armed, and once only; it drops once the server has answered the
// COMMIT, so the server has committed and only the client does not know.
// A COMMIT is a simple query, or a Parse of it executed in the same write (not a Parse that only
// describes it).
type lossyConn struct {
	net.Conn
	armed   *atomic.Bool
	started bool
	binds   int
	mu      sync.Mutex
	doomed  bool
}

func (c *lossyConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if !c.started { // the startup message has no type byte
		c.started = true
		c.mu.Unlock()
		return c.Conn.Write(b)
	}
	commit, parsed, before := false, false, 0
	for rest := b; len(rest) >= 5; {
		typ, n := rest[0], int(binary.BigEndian.Uint32(rest[1:5]))
		if n < 4 || len(rest) < 1+n {
			break
		}
		body := strings.ToLower(string(rest[5 : 1+n]))
		if typ == 'P' {
			_, body, _ = strings.Cut(body, "\x00") // after the statement's name
		}
		switch {
		case typ == 'B':
			c.binds++
		case (typ == 'Q' || typ == 'P') && strings.HasPrefix(body, "begin"):
			c.binds = 0
		case typ == 'Q' && strings.HasPrefix(body, "commit"):
			commit = c.binds >= 4
		case typ == 'P':
			parsed, before = strings.HasPrefix(body, "commit"), c.binds
		case typ == 'E' && parsed:
			commit = before >= 4 // bound before the COMMIT's own Bind
		}
		rest = rest[1+n:]
	}
	if commit && c.armed.CompareAndSwap(true, false) {
		c.doomed = true
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *lossyConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	doomed := c.doomed
	c.mu.Unlock()
	if doomed {
		c.swallowCommitReply() // the server has committed: only its answer is lost
		_ = c.Conn.Close()
		return 0, errors.New("review: connection lost before the COMMIT's reply")
	}
	return c.Conn.Read(b)
}

// swallowCommitReply reads what the server sends, without passing it on, until its
// CommandComplete for the COMMIT (or for 10 s at most, or until the connection fails).
func (c *lossyConn) swallowCommitReply() {
	_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		for len(buf) >= 5 {
			typ, n := buf[0], int(binary.BigEndian.Uint32(buf[1:5]))
			if n < 4 || len(buf) < 1+n {
				break
			}
			if typ == 'C' && strings.HasPrefix(string(buf[5:1+n]), "COMMIT") {
				return
			}
			buf = buf[1+n:]
		}
		k, err := c.Conn.Read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:k]...)
	}
}
