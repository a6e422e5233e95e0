package graph

import (
	"context"

	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

// Backends are the services the BFF calls, each as what the resolvers ask of it: the services'
// clients (order.Client, store.Client, customercenter.Client, httpapi.Client) in production, small
// fakes in graph's own tests.
type Backends struct {
	Orders         Orders
	Stores         Stores
	CustomerCenter CustomerCenter
	// Timelines are every service's internal API, by service name: for orderTimeline,
	// systemStatus and the dead letters.
	Timelines map[string]ServiceAPI
}

// Orders is what the resolvers ask of the order service.
type Orders interface {
	Place(ctx context.Context, in order.PlaceInput) (order.Order, error)
	Get(ctx context.Context, id string) (order.Order, error)
	Cancel(ctx context.Context, id string) (order.Order, error)
}

// Stores is what the resolvers ask of the store service.
type Stores interface {
	Register(ctx context.Context, in store.RegisterInput) (store.Store, error)
	SetOpen(ctx context.Context, id string, open bool) (store.Store, error)
	List(ctx context.Context, region string) ([]store.Store, error)
	Get(ctx context.Context, id string) (store.Store, error)
	Board(ctx context.Context, storeID string) ([]store.Order, error)
	Orders(ctx context.Context, storeID string, status lifecycle.Status) ([]store.Order, error)
	Order(ctx context.Context, orderID string) (store.Order, error)
	MarkCooked(ctx context.Context, orderID string) (store.Order, error)
}

// CustomerCenter is what the resolvers ask of the customer center.
type CustomerCenter interface {
	MyPage(ctx context.Context, customerID string, limit int) ([]customercenter.Row, error)
	Customers(ctx context.Context, search string, limit int) ([]customercenter.Customer, error)
}

// ServiceAPI is any service's internal API: its timeline of an order, and GET /status,
// GET /dead-letters, POST /dead-letters/{replay,discard}, called by path as httpapi.Client.Do does.
type ServiceAPI interface {
	Do(ctx context.Context, method, path string, in, out any) error
	// Timeline is the service's part of an order's timeline (GET /timeline/{orderId}).
	Timeline(ctx context.Context, orderID string) (outbox.Timeline, error)
}

// The services' clients are what the BFF runs on.
var (
	_ Orders         = (*order.Client)(nil)
	_ Stores         = (*store.Client)(nil)
	_ CustomerCenter = (*customercenter.Client)(nil)
	_ ServiceAPI     = (*httpapi.Client)(nil)
)
