package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/input"
)

// Claims are what a bearer token says about its holder.
type Claims struct {
	Role       model.Role `json:"role"`
	CustomerID string     `json:"customerId,omitempty"`
	StoreID    string     `json:"storeId,omitempty"`
	jwt.RegisteredClaims
}

// Auth mints and verifies HS256 bearer tokens.
type Auth struct {
	secret []byte
	now    func() time.Time
	// verified remembers tokens that passed Verify, by their whole text (signature included), so a
	// client that sends the same token with every request costs one verification (the HMAC and
	// two JSON decodes were 1.5% of the process in the bench) until it expires.
	verified *lru.Cache[string, *Claims]
}

// leeway is the clock skew tolerated on a token's expiry.
const leeway = 5 * time.Second

// NewAuth returns an Auth keyed by secret.
func NewAuth(secret string) (*Auth, error) {
	if len(secret) < 16 {
		return nil, errors.New("auth secret must be at least 16 bytes")
	}
	verified, err := lru.New[string, *Claims](10_000)
	if err != nil {
		return nil, err
	}
	return &Auth{secret: []byte(secret), now: time.Now, verified: verified}, nil
}

// Mint signs a token for role, valid for ttl. id is the customerId of a CUSTOMER or the storeId of
// a MASTER; for the others it is optional, and names who holds the token (its subject, which
// nothing authorizes by).
func (a *Auth) Mint(role model.Role, id string, ttl time.Duration) (string, error) {
	token, _, err := a.mint(role, id, ttl)
	return token, err
}

// mint is Mint, returning the token's expiry too.
func (a *Auth) mint(role model.Role, id string, ttl time.Duration) (string, time.Time, error) {
	now := a.now()
	c := Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		Issuer:    "1588-pizza",
	}}
	switch role {
	case model.RoleCustomer:
		c.CustomerID = id
	case model.RoleMaster:
		c.StoreID = id
	case model.RoleAgent, model.RoleAdmin:
		if id != "" {
			if _, err := input.Key("id", id); err != nil {
				return "", time.Time{}, fmt.Errorf("a %s token's subject: %w", role, err)
			}
			c.Subject = id
		}
	default:
		return "", time.Time{}, fmt.Errorf("unknown role %q", role)
	}
	if err := c.validate(); err != nil {
		return "", time.Time{}, err
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	return token, c.ExpiresAt.Time, err
}

func (c Claims) validate() error {
	switch {
	case !c.Role.IsValid():
		return fmt.Errorf("unknown role %q", c.Role)
	case c.Role == model.RoleCustomer && c.CustomerID == "":
		return errors.New("a CUSTOMER token needs its customerId")
	case c.Role == model.RoleMaster && c.StoreID == "":
		return errors.New("a MASTER token needs its storeId")
	case c.Role == model.RoleCustomer:
		if _, err := input.Key("customerId", c.CustomerID); err != nil {
			return fmt.Errorf("a CUSTOMER token's customerId: %w", err)
		}
	case c.Role == model.RoleMaster:
		if _, err := input.ParseID(c.StoreID); err != nil {
			return fmt.Errorf("a MASTER token's storeId: %w", err)
		}
	}
	return nil
}

// Verify checks a token's signature, algorithm, expiry and claims. The claims it returns are
// shared by every request with the same token: read them, never change them.
func (a *Auth) Verify(token string) (*Claims, error) {
	if c, ok := a.verified.Get(token); ok {
		if a.now().Before(c.validUntil()) {
			return c, nil
		}
		a.verified.Remove(token) // expired: verify again, which says so
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(a.now))
	if err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	a.verified.Add(token, &c)
	return &c, nil
}

// Why a caller is not authenticated: the message of every UNAUTHENTICATED error (over HTTP, and
// as the close reason of a websocket refused at connection_init).
const (
	reasonNoToken   = "authentication required: send the header Authorization: Bearer <token>"
	reasonNotBearer = `the Authorization header must be "Bearer <token>"`
	reasonExpired   = "the bearer token has expired"
	reasonInvalid   = "the bearer token is invalid: "
)

// authError is a credential refused: its message is the reason, the same wherever it is met.
type authError struct{ reason string }

func (e *authError) Error() string { return e.reason }

// FromHeader verifies an "Authorization: Bearer <token>" value; the scheme is case-insensitive
// (RFC 7235). An empty value is no viewer and no error; any other failure is an *authError.
func (a *Auth) FromHeader(value string) (*Claims, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, nil
	}
	scheme, token, _ := strings.Cut(value, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, &authError{reasonNotBearer}
	}
	c, err := a.Verify(token)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, &authError{reasonExpired}
	case err != nil:
		return nil, &authError{reasonInvalid + err.Error()}
	}
	return c, nil
}

type viewerKey struct{}

func withViewer(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, viewerKey{}, c)
}

// viewer is the authenticated caller, or nil.
func viewer(ctx context.Context) *Claims {
	c, _ := ctx.Value(viewerKey{}).(*Claims)
	return c
}

// middleware authenticates HTTP requests: a bad or expired token is refused before any GraphQL
// runs (see refuseUnauthenticated); no token at all leaves the request anonymous, and then every
// operation but introspection is refused the same way (see shapeLimits).
func (a *Auth) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.FromHeader(r.Header.Get("Authorization"))
		if err != nil {
			refuseUnauthenticated(w, r, err.Error())
			return
		}
		if c != nil {
			r = r.WithContext(withViewer(r.Context(), c))
		}
		next.ServeHTTP(w, r)
	})
}

// The authorization matrix (docs/api.md, "Tokens and roles"), one function per kind of access. Each returns nil or
// an UNAUTHENTICATED / FORBIDDEN error.

func authenticated(ctx context.Context) (*Claims, error) {
	c := viewer(ctx)
	switch {
	case c == nil:
		return nil, errNoToken
	// A websocket authenticates once, at connection_init: its token can expire while it is open.
	// It is good until its expiry and the leeway, as Verify had it.
	case c.ExpiresAt == nil || time.Now().After(c.validUntil()):
		return nil, errExpired
	}
	return c, nil
}

// validUntil is when the token stops being accepted: its expiry, and the leeway for clock skew.
func (c *Claims) validUntil() time.Time { return c.ExpiresAt.Add(leeway) }

// mayActForCustomer: placing and cancelling orders, reading and watching myPage.
func mayActForCustomer(ctx context.Context, customerID string) error {
	c, err := authenticated(ctx)
	if err != nil {
		return err
	}
	switch c.Role {
	case model.RoleAgent, model.RoleAdmin:
		return nil
	case model.RoleCustomer:
		if c.CustomerID == customerID {
			return nil
		}
	}
	return errForbidden
}

// mayReadOrder: an order's owner, agents and admins, and the master of the store that has it.
func mayReadOrder(ctx context.Context, customerID, storeID string) error {
	c, err := authenticated(ctx)
	if err != nil {
		return err
	}
	if c.Role == model.RoleMaster && storeID != "" && c.StoreID == storeID {
		return nil
	}
	return mayActForCustomer(ctx, customerID)
}

// mayManageStore: a store's own master, and admins.
func mayManageStore(ctx context.Context, storeID string) error {
	c, err := authenticated(ctx)
	if err != nil {
		return err
	}
	if c.Role == model.RoleAdmin || (c.Role == model.RoleMaster && c.StoreID == storeID) {
		return nil
	}
	return errForbidden
}

func mustBeAdmin(ctx context.Context) error { return hasRole(ctx, model.RoleAdmin) }

// hasRole: the operation is for these roles only (whose objects they may touch is checked after).
func hasRole(ctx context.Context, roles ...model.Role) error {
	c, err := authenticated(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(roles, c.Role) {
		return errForbidden
	}
	return nil
}
