package graph

import (
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/services/customercenter"
)

// watchMyPage streams a customer's myPage rows: first, when seen is given, the current rows newer
// than what the client holds; then every change the hub hands over, each order's versions only
// ever increasing. It ends with the subscription, when the token expires, or with an error when
// the subscriber falls too far behind.
func (r *Resolver) watchMyPage(ctx context.Context, customerID string, seen []*model.SeenVersion) (<-chan *model.MyPageOrder, error) {
	sub := r.hub.subscribe(customerID) // before reading the replay, so nothing falls in between
	sent := map[string]int{}
	var replay []*model.MyPageOrder
	if seen != nil {
		for _, s := range seen {
			sent[s.OrderID] = s.Version
		}
		rows, err := r.myPageRows(ctx, customerID, customercenter.MaxLimit)
		if err != nil {
			r.hub.unsubscribe(sub)
			return nil, err
		}
		for i := len(rows) - 1; i >= 0; i-- { // oldest first
			replay = append(replay, toMyPage(rows[i]))
		}
	}
	expires := time.Until(viewer(ctx).ExpiresAt.Time)

	out := make(chan *model.MyPageOrder, 1)
	go func() {
		defer close(out)
		defer r.hub.unsubscribe(sub)
		expired := time.NewTimer(expires)
		defer expired.Stop()
		send := func(row *model.MyPageOrder) bool {
			if row.Version <= sent[row.OrderID] {
				return true // the client has it already
			}
			select {
			case out <- row:
				sent[row.OrderID] = row.Version
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, row := range replay {
			if !send(row) {
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-expired.C:
				transport.AddSubscriptionError(ctx, coded(codeUnauthenticated, "the token expired; subscribe again with a new one"))
				return
			case <-sub.dropped:
				transport.AddSubscriptionError(ctx, coded("UNAVAILABLE", "the subscriber fell too far behind and was dropped; resubscribe with seen"))
				return
			case <-sub.resync:
				rows, err := r.myPageRows(ctx, customerID, customercenter.MaxLimit)
				if err != nil {
					r.logger.WarnContext(ctx, "myPage resync failed", "customer_id", customerID, "err", err)
					transport.AddSubscriptionError(ctx, coded("UNAVAILABLE", "updates may have been missed and could not be re-read; resubscribe with seen"))
					return
				}
				for i := len(rows) - 1; i >= 0; i-- {
					if !send(toMyPage(rows[i])) {
						return
					}
				}
			case row := <-sub.rows:
				if !send(row) {
					return
				}
			}
		}
	}()
	return out, nil
}
