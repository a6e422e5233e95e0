package graph

import (
	"context"
	"time"

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
		return nil, coded(codeBadUserInput, "subscriptions need a websocket (graphql-transport-ws)")
	}
	var sent map[string]int // what the client holds
	if seen != nil {
		sent = make(map[string]int, len(seen))
		for _, s := range seen {
			sent[s.OrderID] = max(sent[s.OrderID], s.Version)
		}
	}
	reread := func() ([]customercenter.Row, error) { return r.myPageRows(ctx, customerID, customercenter.MaxLimit) }
	// With seen, the first drain reads the current rows (the replay): after subscribing, so
	// nothing falls in between.
	sub := r.hub.subscribe(customerID, reread, sent, seen != nil)
	expired := time.AfterFunc(time.Until(viewer(ctx).validUntil()), func() {
		sub.end(coded(codeUnauthenticated, "%s; subscribe again with a new one", reasonExpired))
		r.hub.unsubscribe(sub)
	})
	context.AfterFunc(ctx, func() { // the client completed it, or the socket closed
		expired.Stop()
		r.hub.unsubscribe(sub)
	})
	wake := sink.attach(sub)
	sub.mu.Lock()
	sub.wake = wake
	sub.mu.Unlock()
	return sub.out, nil
}
