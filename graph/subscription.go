package graph

import (
	"context"
	"time"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/services/customercenter"
)

// watchMyPage streams a customer's myPage rows: first, when seen is given, the current rows newer
// than what the client holds; then every change the hub hands over, each order's versions only
// ever increasing. It ends with the subscription, when the token expires, or with an error when
// the subscriber falls too far behind.
//
// It holds no goroutine: the websocket transport drains the stream when the hub wakes it.
func (r *Resolver) watchMyPage(ctx context.Context, customerID string, seen []*model.SeenVersion) (<-chan *model.MyPageOrder, error) {
	sink := sinkFrom(ctx)
	if sink == nil {
		return nil, needsWebsocket()
	}
	reread := func() ([]customercenter.Row, error) { return r.myPageRows(ctx, customerID, customercenter.MaxLimit) }
	// With seen, the first drain reads the current rows (the replay): after subscribing, so
	// nothing falls in between.
	sub := r.hub.subscribe(customerID, reread, sentFrom(seen), seen != nil)
	return stream(ctx, r.hub.myPage, sub, sink), nil
}

// watchStoreOrders streams a store's board as watchMyPage streams myPage: first, when seen is
// given, the store's current orders (its unfinished ones and those changed in the last day) newer
// than what the client holds, then every change of the store's orders. The store is asked once at
// the start, after subscribing (so nothing falls in between): with seen for the replay, without
// to know it exists; an unknown store is NOT_FOUND, as the storeOrders query answers.
func (r *Resolver) watchStoreOrders(ctx context.Context, storeID string, seen []*model.SeenVersion) (<-chan *model.StoreOrder, error) {
	sink := sinkFrom(ctx)
	if sink == nil {
		return nil, needsWebsocket()
	}
	board := func() ([]*model.StoreOrder, error) {
		orders, err := r.be.Stores.Board(ctx, storeID)
		out := make([]*model.StoreOrder, len(orders))
		for i, o := range orders {
			out[i] = toStoreOrder(o)
		}
		return out, err
	}
	sub := r.hub.boards.subscribe(storeID, board, sentFrom(seen), false)
	var err error
	if seen != nil {
		var current []*model.StoreOrder
		if current, err = board(); err == nil {
			sub.replay(current)
		}
	} else {
		_, err = r.be.Stores.Get(ctx, storeID)
	}
	if err != nil {
		r.hub.boards.unsubscribe(sub)
		return nil, err
	}
	return stream(ctx, r.hub.boards, sub, sink), nil
}

func needsWebsocket() error {
	return coded(errs.BadUserInput, "subscriptions need a websocket (graphql-transport-ws)")
}

// sentFrom is what the client says it holds: the newest version of each order (nil without seen).
func sentFrom(seen []*model.SeenVersion) map[string]int {
	if seen == nil {
		return nil
	}
	sent := make(map[string]int, len(seen))
	for _, s := range seen {
		sent[s.OrderID] = max(sent[s.OrderID], s.Version)
	}
	return sent
}

// stream hands sub over to the transport: it ends when the client completes it or the socket
// closes, and with UNAUTHENTICATED when the token expires.
func stream[T any](ctx context.Context, f *fanout[T], sub *subscriber[T], sink streamSink) <-chan T {
	expired := time.AfterFunc(time.Until(viewer(ctx).validUntil()), func() {
		sub.end(coded(errs.Unauthenticated, "%s; subscribe again with a new one", reasonExpired))
		f.unsubscribe(sub)
	})
	context.AfterFunc(ctx, func() { // the client completed it, or the socket closed
		expired.Stop()
		f.unsubscribe(sub)
	})
	wake := sink.attach(sub)
	sub.mu.Lock()
	sub.wake = wake
	sub.mu.Unlock()
	return sub.out
}
