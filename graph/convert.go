package graph

import (
	"context"
	"errors"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

func toOrder(o order.Order) *model.Order {
	out := &model.Order{
		ID: o.ID, CustomerID: o.CustomerID, Pizza: o.Pizza, Qty: o.Qty, Region: o.Region,
		Status: model.OrderStatus(o.Status), StoreID: optional(o.StoreID),
		PlacedAt: o.PlacedAt, UpdatedAt: o.UpdatedAt,
	}
	if o.RejectReason != "" {
		rr := model.RejectReason(o.RejectReason)
		out.RejectReason = &rr
	}
	if o.RetryAfterSeconds > 0 {
		n := o.RetryAfterSeconds
		out.RetryAfterSeconds = &n
	}
	return out
}

func toStore(s store.Store) *model.Store {
	return &model.Store{ID: s.ID, Name: s.Name, Region: s.Region, Open: s.Open}
}

func toStoreOrder(o store.Order) *model.StoreOrder {
	return &model.StoreOrder{ID: o.OrderID, OrderID: o.OrderID, StoreID: o.StoreID, Pizza: o.Pizza, Qty: o.Qty,
		Status: model.OrderStatus(o.Status), ReceivedAt: o.ReceivedAt, Version: int(o.Version)}
}

// notFoundIfForbidden hides the existence of another's object from a caller who may not see it.
func notFoundIfForbidden(err error, what, id string) error {
	if errors.Is(err, errForbidden) {
		return errs.Errorf(errs.NotFound, "no %s %s", what, id)
	}
	return err
}

// myPageRows reads a customer's rows from customercenter, newest first.
func (r *Resolver) myPageRows(ctx context.Context, customerID string, limit int) ([]customercenter.Row, error) {
	return r.be.CustomerCenter.MyPage(ctx, customerID, limit)
}

func toCustomer(c customercenter.Customer) *model.Customer {
	at := c.LastOrderAt
	return &model.Customer{ID: c.ID, Orders: int(c.Orders), LastOrderAt: &at}
}
