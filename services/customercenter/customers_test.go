package customercenter

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/outbox"
)

// The call center's search: customers whose id starts with exactly what was typed (no wildcard,
// no trimming, no case folding), most recently active first, with how many orders they have.
func TestCustomersByPrefixMostRecentFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := dbtest.NewDatabase(t, db.CustomerCenter)
	ob, err := outbox.New(pool, outbox.Config{Service: Producer})
	require.NoError(t, err)
	s := New(pool, ob)
	// customer, minutes ago its order last changed
	rows := []struct {
		customer string
		ago      int
	}{
		{"1", 50}, {"1", 5}, {"10", 1}, {"100", 30}, {"2", 2}, {"c-1", 40}, {"c-10", 3}, {"c_1", 4},
		{"C-1", 6}, {"고객 7", 7}, {"고객 8", 60}, {"", 0}, // details not arrived yet: no customer
	}
	for i, r := range rows {
		_, err := pool.Exec(ctx, `INSERT INTO mypage (order_id, customer_id, status, updated_at) VALUES ($1, $2, 'ORDERED', now() - $3 * interval '1 minute')`,
			strconv.Itoa(i+1), r.customer, r.ago)
		require.NoError(t, err)
	}
	ids := func(search string, limit int) []string {
		t.Helper()
		cs, err := s.Customers(ctx, search, limit)
		require.NoError(t, err)
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.ID
		}
		return out
	}
	require.Equal(t, []string{"10", "2", "c-10", "c_1", "1", "C-1", "고객 7", "100", "c-1", "고객 8"}, ids("", 20))
	require.Equal(t, []string{"10", "2", "c-10"}, ids("", 3))
	require.Equal(t, []string{"10", "1", "100"}, ids("1", 20))
	require.Equal(t, []string{"100"}, ids("100", 20))
	require.Equal(t, []string{"c-10", "c-1"}, ids("c-1", 20))
	require.Equal(t, []string{"c_1"}, ids("c_", 20), "_ is no wildcard")
	require.Empty(t, ids("c%", 20), "% is no wildcard")
	require.Equal(t, []string{"C-1"}, ids("C", 20), "as typed: no case folding")
	require.Equal(t, []string{"고객 7", "고객 8"}, ids("고", 20))
	require.Empty(t, ids(" 1", 20), "as typed: no trimming")
	require.Empty(t, ids("1 ", 20))
	require.Empty(t, ids("3", 20))

	cs, err := s.Customers(ctx, "1", 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, "10", cs[0].ID)
	cs, err = s.Customers(ctx, "1", 100)
	require.NoError(t, err)
	require.Equal(t, "1", cs[1].ID)
	require.Equal(t, int64(2), cs[1].Orders, "two orders")
	require.WithinDuration(t, time.Now().Add(-5*time.Minute), cs[1].LastOrderAt, time.Minute, "when the newest change was")

	for _, bad := range []struct {
		search string
		limit  int
		field  string
	}{
		{"", 0, "limit"}, {"", 101, "limit"}, {"", -1, "limit"},
		{strings.Repeat("x", 65), 20, "search"}, {"1\x00", 20, "search"}, {"1\u200b", 20, "search"}, {"\xff", 20, "search"},
	} {
		_, err := s.Customers(ctx, bad.search, bad.limit)
		var ae *errs.Error
		require.ErrorAs(t, err, &ae, "%q %d", bad.search, bad.limit)
		require.Equal(t, errs.BadUserInput, ae.Code)
		require.Equal(t, bad.field, ae.Field)
	}
	_, err = s.Customers(ctx, strings.Repeat("고", 64), 100)
	require.NoError(t, err, "64 characters are a customer id's most")
}

// A prefix is a range of ids in byte order: [prefix, prefixEnd(prefix)) holds exactly the strings
// that start with it.
func TestPrefixEndBoundsExactlyThePrefixed(t *testing.T) {
	t.Parallel()
	alphabet := []rune{'a', 'b', 'z', '0', '~', '\u007f', '\u00ff', '가', '힣', '\uD7FF', '\uE000', '\uFFFF', '\U0010FFFE', '\U0010FFFF'}
	word := func(r *rand.Rand) string {
		var b strings.Builder
		for range r.IntN(4) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		prefix, s := word(r), word(r)
		if r.IntN(3) == 0 {
			s = prefix + s
		}
		end, bounded := prefixEnd(prefix)
		in := s >= prefix && (!bounded || s < end)
		require.Equal(t, strings.HasPrefix(s, prefix), in, "%q with prefix %q, end %q", s, prefix, end)
	}
	end, bounded := prefixEnd("\U0010FFFF\U0010FFFF")
	require.False(t, bounded, "nothing is greater: %q", end)
	end, _ = prefixEnd("a\uD7FF")
	require.Equal(t, "a\uE000", end, "no surrogate")
}

// The search reads through its index, not the whole table, however big myPage grows.
func TestCustomerSearchUsesItsIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewOneConnPool(t, db.CustomerCenter)
	ob, err := outbox.New(pool, outbox.Config{Service: Producer})
	require.NoError(t, err)
	s := New(pool, ob)
	_, err = pool.Exec(ctx, `
INSERT INTO mypage (order_id, customer_id, status, updated_at)
SELECT n::text, 'c-' || (n % 5000), 'ORDERED', now() - n * interval '1 second' FROM generate_series(1, 20000) n`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `ANALYZE mypage`)
	require.NoError(t, err)
	for range 8 { // past where PostgreSQL settles on a generic plan
		before, scans := dbtest.SeqScans(t, pool, "mypage"), dbtest.IndexScans(t, pool, "mypage_customer_prefix")
		cs, err := s.Customers(ctx, "c-123", 20)
		require.NoError(t, err)
		require.Len(t, cs, 11) // c-123 and c-1230 ... c-1239
		require.Equal(t, "c-123", cs[0].ID, "its newest order is the most recent")
		require.Equal(t, int64(4), cs[0].Orders)
		require.Zero(t, dbtest.SeqScans(t, pool, "mypage")-before, "the search read the whole table")
		require.Positive(t, dbtest.IndexScans(t, pool, "mypage_customer_prefix")-scans)
	}
}
