package graph

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
)

// statusTimeout is how long systemStatus waits for a service: one that has not answered by then
// is reported as not ready, and the others are still shown.
const statusTimeout = time.Second

// systemStatus asks every service, at once, how it is doing (GET /status on its internal API),
// each within statusTimeout. A service that does not answer is ready=false with the reason; the
// query itself never fails for it.
func (r *Resolver) systemStatus(ctx context.Context) *model.SystemStatus {
	var names []string
	for _, s := range db.Services { // order, store, delivery, customercenter
		if _, ok := r.be.Services[string(s)]; ok {
			names = append(names, string(s))
		}
	}
	out := &model.SystemStatus{At: time.Now(), Services: make([]*model.ServiceStatus, len(names))}
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { out.Services[i] = r.serviceStatus(ctx, name) })
	}
	wg.Wait()
	return out
}

func (r *Resolver) serviceStatus(ctx context.Context, name string) *model.ServiceStatus {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := r.be.Services[name].Status(ctx)
	out := &model.ServiceStatus{Name: name, Breakers: []*model.Breaker{}}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		out.Error = new("did not answer within " + statusTimeout.String())
		return out
	case err != nil:
		var ae *errs.Error
		if errors.As(err, &ae) {
			out.Error = new(ae.Message)
		} else {
			out.Error = new(err.Error())
		}
		return out
	}
	out.Ready = st.Ready
	if st.Error != "" {
		out.Error = new(st.Error)
	}
	out.OutboxBacklog, out.OutboxOldestSeconds = int(st.OutboxBacklog), st.OutboxOldestSeconds
	out.ConsumerQueued, out.ConsumerLagSeconds = int(st.ConsumerQueued), st.ConsumerLagSeconds
	out.DeadLetters = int(st.DeadLetters)
	for _, b := range st.Breakers {
		out.Breakers = append(out.Breakers, &model.Breaker{Name: b.Name, State: model.BreakerState(b.State)})
	}
	return out
}
