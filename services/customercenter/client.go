package customercenter

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/1588-pizza/pizza/httpapi"
)

// Client calls the customercenter's internal API: what the BFF uses.
type Client struct{ c *httpapi.Client }

// NewClient returns a client for the customercenter at base.
func NewClient(base string) *Client { return &Client{c: httpapi.NewClient(base)} }

// MyPage returns a customer's rows, newest first.
func (c *Client) MyPage(ctx context.Context, customerID string, limit int) ([]Row, error) {
	var rows []Row
	return rows, c.c.Do(ctx, http.MethodGet, "/mypage?customerId="+url.QueryEscape(customerID)+"&limit="+strconv.Itoa(limit), nil, &rows)
}

// Customers returns the customers whose id starts with search (all when empty), most recently
// active first.
func (c *Client) Customers(ctx context.Context, search string, limit int) ([]Customer, error) {
	var out []Customer
	return out, c.c.Do(ctx, http.MethodGet, "/customers?search="+url.QueryEscape(search)+"&limit="+strconv.Itoa(limit), nil, &out)
}
