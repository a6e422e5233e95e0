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
	// Services are every service's operational API, by service name: for orderTimeline,
	// systemStatus and the dead letters.
	Services map[string]ServiceAPI
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

// ServiceAPI is what every service answers beside its own API (httpapi's ServeTimeline,
// ServeStatus and ServeDeadLetters): its part of an order's timeline, how it is doing, and its
// dead letters.
type ServiceAPI interface {
	Timeline(ctx context.Context, orderID string) (outbox.Timeline, error)
	Status(ctx context.Context) (httpapi.Status, error)
	DeadLetters(ctx context.Context, limit int) ([]outbox.DeadLetter, error)
	ReplayDeadLetters(ctx context.Context, ids []string, all bool) ([]string, error)
	DiscardDeadLetters(ctx context.Context, ids []string) ([]string, error)
}

// The services' clients are what the BFF runs on.
var (
	_ Orders         = (*order.Client)(nil)
	_ Stores         = (*store.Client)(nil)
	_ CustomerCenter = (*customercenter.Client)(nil)
	_ ServiceAPI     = (*httpapi.Client)(nil)
)
