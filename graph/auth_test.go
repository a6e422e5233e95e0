package graph

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph/model"
)

// A verified token is remembered, but only until it expires, and only under its exact text.
func TestVerifiedTokensAreRememberedUntilTheyExpire(t *testing.T) {
	a, err := NewAuth("a secret of sixteen bytes or more")
	require.NoError(t, err)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }

	token, err := a.Mint(model.RoleCustomer, "c-1", time.Minute)
	require.NoError(t, err)
	c, err := a.Verify(token)
	require.NoError(t, err)
	require.Equal(t, "c-1", c.CustomerID)
	again, err := a.Verify(token)
	require.NoError(t, err)
	require.Same(t, c, again, "the second use is answered from memory")

	// Another signature over the same claims is another text: it is verified, and refused.
	dot := strings.LastIndex(token, ".")
	forged := token[:dot+1] + strings.Repeat("A", len(token)-dot-1)
	_, err = a.Verify(forged)
	require.Error(t, err)

	now = now.Add(time.Minute + leeway - time.Second)
	_, err = a.Verify(token)
	require.NoError(t, err, "within the leeway")
	now = now.Add(2 * time.Second)
	_, err = a.Verify(token)
	require.ErrorContains(t, err, "expired", "a remembered token expires like any other")
	_, err = a.Verify(token)
	require.ErrorContains(t, err, "expired", "and is not remembered as valid again")
}
