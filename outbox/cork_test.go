package outbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// recordingConn is the socket under a corkConn: it records each write, and fails them once told.
type recordingConn struct {
	net.Conn // nil: only Write, SetWriteDeadline and Close are called
	mu       sync.Mutex
	writes   [][]byte
	fail     error
	closed   bool
}

func (r *recordingConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, append([]byte(nil), b...))
	return len(b), nil
}

func (r *recordingConn) SetWriteDeadline(time.Time) error { return nil }

func (r *recordingConn) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func TestCorkedWritesLeaveAsOne(t *testing.T) {
	sock := &recordingConn{}
	c := &corkConn{Conn: sock}

	_, err := c.Write([]byte("a"))
	require.NoError(t, err)
	c.Cork()
	for _, s := range []string{"b", "c", "d"} {
		n, err := c.Write([]byte(s))
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	require.Equal(t, [][]byte{[]byte("a")}, sock.writes, "nothing may leave while corked")
	c.Uncork()
	require.Equal(t, [][]byte{[]byte("a"), []byte("bcd")}, sock.writes)
	_, err = c.Write([]byte("e"))
	require.NoError(t, err)
	require.Equal(t, []byte("e"), sock.writes[2], "uncorked writes go straight out")

	c.Cork()
	c.Uncork()
	require.Len(t, sock.writes, 3, "an empty cork writes nothing")
}

// A held write that fails breaks the connection: the socket is closed (so the library's reader
// ends the connection and fails what was in flight) and later writes fail too.
func TestFailedUncorkClosesTheSocket(t *testing.T) {
	sock := &recordingConn{}
	c := &corkConn{Conn: sock}
	c.Cork()
	_, err := c.Write([]byte("held"))
	require.NoError(t, err)
	broken := errors.New("broken pipe")
	sock.fail = broken
	c.Uncork()
	require.True(t, sock.closed)
	_, err = c.Write([]byte("after"))
	require.ErrorIs(t, err, broken)
}

// A round of publishAll leaves in one write, not one per message (amqp091 flushes each message),
// and every message is still confirmed and queued.
func TestPublishAllSendsARoundInOneWrite(t *testing.T) {
	b := setup(t)
	p := b.publisher(t, outboxtest.URL())
	b.declare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Publish(ctx, testKey, "warm-up", []byte(`{}`), nil)) // connected, topology declared
	pc, err := p.channel(ctx)
	require.NoError(t, err)

	const n = 300
	msgs := make([]message, n)
	for i := range msgs {
		msgs[i] = message{Key: testKey, MsgID: fmt.Sprintf("m-%d", i), Body: []byte(`{"n":` + fmt.Sprint(i) + `}`)}
	}
	before := pc.sock.writes.Load()
	for i, err := range p.publishAll(ctx, msgs) {
		require.NoError(t, err, "message %d", i)
	}
	// One write for the round; a heartbeat may fall in between.
	require.LessOrEqual(t, pc.sock.writes.Load()-before, int64(2))
	require.Eventually(t, func() bool { return outboxtest.QueueDepth(t, b.queue.Name) == n+1 }, 10*time.Second, 10*time.Millisecond)
}
