package store

import (
	"context"
	"net/http"
	"net/url"

	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/lifecycle"
)

// Client calls the store service's internal API: what the order service and the BFF use.
type Client struct{ c *httpapi.Client }

// NewClient returns a client for the store service at base.
func NewClient(base string) *Client { return &Client{c: httpapi.NewClient(base)} }

// AnyOpen asks whether any store of region is open.
func (c *Client) AnyOpen(ctx context.Context, region string) (bool, error) {
	var a Availability
	err := c.c.Do(ctx, http.MethodGet, "/availability?region="+url.QueryEscape(region), nil, &a)
	return a.Open, err
}

// Register adds a store.
func (c *Client) Register(ctx context.Context, in RegisterInput) (Store, error) {
	var st Store
	return st, c.c.Do(ctx, http.MethodPost, "/stores", in, &st)
}

// SetOpen opens or closes a store.
func (c *Client) SetOpen(ctx context.Context, id string, open bool) (Store, error) {
	var st Store
	return st, c.c.Do(ctx, http.MethodPut, "/stores/"+url.PathEscape(id)+"/open", map[string]bool{"open": open}, &st)
}

// List lists the stores of region (all when empty).
func (c *Client) List(ctx context.Context, region string) ([]Store, error) {
	var out []Store
	return out, c.c.Do(ctx, http.MethodGet, "/stores?region="+url.QueryEscape(region), nil, &out)
}

// Get returns one store.
func (c *Client) Get(ctx context.Context, id string) (Store, error) {
	var st Store
	return st, c.c.Do(ctx, http.MethodGet, "/stores/"+url.PathEscape(id), nil, &st)
}

// Board returns what a store's live board starts from: its unfinished orders and those that
// changed in the last day, oldest first.
func (c *Client) Board(ctx context.Context, storeID string) ([]Order, error) {
	var out []Order
	return out, c.c.Do(ctx, http.MethodGet, "/stores/"+url.PathEscape(storeID)+"/board", nil, &out)
}

// Orders lists a store's orders, optionally of one status.
func (c *Client) Orders(ctx context.Context, storeID string, status lifecycle.Status) ([]Order, error) {
	var out []Order
	return out, c.c.Do(ctx, http.MethodGet, "/stores/"+url.PathEscape(storeID)+"/orders?status="+url.QueryEscape(string(status)), nil, &out)
}

// Order returns one store order.
func (c *Client) Order(ctx context.Context, orderID string) (Order, error) {
	var o Order
	return o, c.c.Do(ctx, http.MethodGet, "/store-orders/"+url.PathEscape(orderID), nil, &o)
}

// MarkCooked marks an order cooked.
func (c *Client) MarkCooked(ctx context.Context, orderID string) (Order, error) {
	var o Order
	return o, c.c.DoIdempotent(ctx, http.MethodPost, "/store-orders/"+url.PathEscape(orderID)+"/cooked", nil, &o) // cooking twice answers the same
}

// CancelOrder asks the store service to cancel an order (the order service's synchronous call,
// before it records a cancellation): a CONFLICT when the order is cooked, or was rejected,
// already.
func (c *Client) CancelOrder(ctx context.Context, orderID string) error {
	return c.c.DoIdempotent(ctx, http.MethodPost, "/store-orders/"+url.PathEscape(orderID)+"/cancel", nil, nil) // cancelling twice answers the same
}
