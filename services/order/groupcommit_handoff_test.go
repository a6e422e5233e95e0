package order

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/lifecycle"
)

// A placement that is handed the lead while it is still in the queue can be committed by another
// leader before its goroutine reaches the select in await. Then both p.done and p.lead are
// ready, and whichever the select picks, the lead must be passed on: a dropped token would
// leave groups.leaders counting it, and one of the maxCommitters slots would be gone for the
// life of the process. (Found in review.)
//
// The interleaving is made deterministic here: two leaders are held inside their transactions by
// idempotency-key conflicts with uncommitted rows, and placement b is queued by hand, standing
// for a Place whose goroutine has appended itself (not leading: both slots taken) and has been
// descheduled before its select.
func TestHandedLeadIsNotLostWhenAnotherLeaderCommitsThePlacement(t *testing.T) {
	ctx := context.Background()
	s, pool := newGroupService(t)

	waitState := func(queued, leaders int) { t.Helper(); waitGroupState(t, s, queued, leaders) }
	block := func(key string) pgx.Tx { return holdKey(t, pool, key) }
	place := func(in PlaceInput) <-chan error {
		out := make(chan error, 1)
		go func() { _, err := s.Place(ctx, in); out <- err }()
		return out
	}
	in := func(customer, key string) PlaceInput {
		return PlaceInput{CustomerID: customer, Pizza: "불고기", Qty: 1, Region: "강남구", IdempotencyKey: key}
	}

	t1, t2 := block("k1"), block("k2")
	a := place(in("c-block", "k1")) // leads (slot 1), its INSERT waits for t1
	waitState(0, 1)
	c := place(in("c-block", "k2")) // leads (slot 2), its INSERT waits for t2
	waitState(0, 2)

	b := &placement{ctx: ctx, in: in("c-b", ""), status: lifecycle.Ordered,
		lead: make(chan struct{}, 1), done: make(chan struct{})}
	s.groups.mu.Lock()
	s.groups.queue = append(s.groups.queue, b) // as write does, when both slots are taken
	s.groups.mu.Unlock()
	d := place(in("c-d", "")) // queued behind b, waiting in its select
	waitState(2, 2)

	require.NoError(t, t1.Commit(ctx))
	require.NoError(t, <-a)
	require.Eventually(t, func() bool { return len(b.lead) == 1 }, 10*time.Second, time.Millisecond,
		"a's leader hands the lead to b, the first placement not led")

	require.NoError(t, t2.Commit(ctx))
	require.NoError(t, <-c) // c's leader hands the lead to d, which commits the group [b, d]
	require.NoError(t, <-d)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Fatal("b was never committed")
	}
	require.NoError(t, b.err)
	require.NotEmpty(t, b.o.ID)

	// b's goroutine now reaches its select with both cases ready, and must pass the lead on
	// whichever it picks.
	require.Len(t, b.lead, 1, "b holds an unused lead token while its order is already committed")
	o, err := s.await(ctx, b)
	require.NoError(t, err)
	require.Equal(t, b.o.ID, o.ID)

	q, leaders := groupState(s)
	require.Zero(t, q)
	require.Zero(t, leaders, "every Place has returned, yet a leader slot is still counted: it was lost with b's token")
}

// groupState is the group-commit queue's length and leader count.
func groupState(s *Service) (queued, leaders int) {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	return len(s.groups.queue), s.groups.leaders
}

// waitGroupState waits until the group-commit queue holds queued placements and leaders lead.
func waitGroupState(t *testing.T, s *Service, queued, leaders int) {
	t.Helper()
	require.Eventually(t, func() bool {
		q, l := groupState(s)
		return q == queued && l == leaders
	}, 10*time.Second, time.Millisecond, "want queued=%d leaders=%d", queued, leaders)
}

// holdKey holds an uncommitted order with (c-block, key): a Place with that key waits in its
// group's INSERT until the returned transaction ends.
func holdKey(t *testing.T, pool *pgxpool.Pool, key string) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	require.NoError(t, err)
	_, err = tx.Exec(context.Background(), `INSERT INTO orders (customer_id, pizza, qty, region, status, idempotency_key)
VALUES ('c-block', '불고기', 1, '강남구', 'ORDERED', $1)`, key)
	require.NoError(t, err)
	return tx
}
