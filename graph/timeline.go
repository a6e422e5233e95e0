package graph

import (
	"context"
	"slices"
	"sync"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox"
)

// orderTimeline asks every service, at once, what it wrote and consumed of the order, and joins
// the answers by eventId.
func (r *Resolver) orderTimeline(ctx context.Context, orderID string) ([]*model.TimelineEvent, error) {
	type answer struct {
		service string
		tl      outbox.Timeline
		err     error
	}
	answers := make(chan answer, len(r.be.Services))
	var wg sync.WaitGroup
	for name, c := range r.be.Services {
		wg.Go(func() {
			tl, err := c.Timeline(ctx, orderID)
			answers <- answer{name, tl, err}
		})
	}
	wg.Wait()
	close(answers)

	byID := map[string]*model.TimelineEvent{}
	var consumed []answer
	for a := range answers {
		if a.err != nil {
			return nil, a.err
		}
		for _, w := range a.tl.Written {
			byID[w.EventID] = &model.TimelineEvent{
				EventID: w.EventID, Type: w.Type, Producer: w.Producer, WrittenAt: w.WrittenAt,
				PublishedAt: w.PublishedAt, PublishAttempts: w.Attempts, Consumed: []*model.EventConsumption{},
			}
		}
		consumed = append(consumed, a)
	}
	for _, a := range consumed {
		for _, c := range a.tl.Consumed {
			if ev := byID[c.EventID]; ev != nil {
				ev.Consumed = append(ev.Consumed, &model.EventConsumption{Service: a.service, At: c.ConsumedAt})
			}
		}
	}
	out := make([]*model.TimelineEvent, 0, len(byID))
	for _, ev := range byID {
		slices.SortFunc(ev.Consumed, func(a, b *model.EventConsumption) int { return a.At.Compare(b.At) })
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b *model.TimelineEvent) int { return a.WrittenAt.Compare(b.WrittenAt) })
	return out, nil
}
