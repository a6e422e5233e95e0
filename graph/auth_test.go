package graph

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// An id in a token is the id, exactly: one that a service would have to trim or otherwise read
// differently from how authorization compares it is refused, when minted and when presented.
func TestTokensCarryOnlyExactIDs(t *testing.T) {
	t.Parallel()
	a, err := NewAuth("a secret of sixteen bytes or more")
	require.NoError(t, err)
	for _, bad := range []struct {
		role model.Role
		id   string
	}{
		{model.RoleCustomer, "2 "}, {model.RoleCustomer, " 2"}, {model.RoleCustomer, "2\u0085"},
		{model.RoleCustomer, "2\u200b"}, {model.RoleCustomer, strings.Repeat("x", 65)},
		{model.RoleMaster, "3 "}, {model.RoleMaster, "03"}, {model.RoleMaster, "x"}, {model.RoleMaster, "-1"},
	} {
		_, err := a.Mint(bad.role, bad.id, time.Minute)
		require.Error(t, err, "minting %s %q", bad.role, bad.id)

		// A token signed with the right key but carrying such an id (as an older `pizza token`
		// minted them) is refused too.
		c := Claims{Role: bad.role, RegisteredClaims: jwt.RegisteredClaims{
			IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
		}}
		if bad.role == model.RoleCustomer {
			c.CustomerID = bad.id
		} else {
			c.StoreID = bad.id
		}
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
		require.NoError(t, err)
		_, err = a.Verify(token)
		require.Error(t, err, "verifying %s %q", bad.role, bad.id)
	}
	for _, good := range []struct {
		role model.Role
		id   string
	}{{model.RoleCustomer, "2"}, {model.RoleCustomer, "c-1"}, {model.RoleCustomer, "고객 7"}, {model.RoleMaster, "3"}} {
		token, err := a.Mint(good.role, good.id, time.Minute)
		require.NoError(t, err, "minting %s %q", good.role, good.id)
		_, err = a.Verify(token)
		require.NoError(t, err)
	}
}
