package order

import (
	"context"
	"net/http"
	"net/url"

	"github.com/1588-pizza/pizza/httpapi"
)

// Client calls the order service's internal API.
type Client struct{ c *httpapi.Client }

// NewClient returns a client for the order service at base.
func NewClient(base string) *Client { return &Client{c: httpapi.NewClient(base)} }

// Place places an order.
func (c *Client) Place(ctx context.Context, in PlaceInput) (Order, error) {
	var o Order
	if in.IdempotencyKey != "" { // the service returns the first order for the key: safe to repeat
		return o, c.c.DoIdempotent(ctx, http.MethodPost, "/orders", in, &o)
	}
	return o, c.c.Do(ctx, http.MethodPost, "/orders", in, &o)
}

// Get returns one order.
func (c *Client) Get(ctx context.Context, id string) (Order, error) {
	var o Order
	return o, c.c.Do(ctx, http.MethodGet, "/orders/"+url.PathEscape(id), nil, &o)
}

// Cancel cancels an order.
func (c *Client) Cancel(ctx context.Context, id string) (Order, error) {
	var o Order
	return o, c.c.DoIdempotent(ctx, http.MethodPost, "/orders/"+url.PathEscape(id)+"/cancel", nil, &o) // cancelling twice answers the same
}
