package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/outbox"
)

// statusBudget bounds what GET /status takes, within the second the BFF gives a service: a
// database that does not answer is reported, not waited for.
const statusBudget = 700 * time.Millisecond

// serviceStatus is what a service's GET /status reads: its readiness (as /readyz), its outbox's
// backlog and its parked dead letters (two indexed queries), its consumer's latest numbers and its
// breakers (from memory).
type serviceStatus struct {
	name     string
	ready    func(context.Context) error
	outbox   *outbox.Outbox
	consumer *outbox.Consumer
	dead     *outbox.DeadLetters
	breakers func() []httpapi.BreakerStatus // nil: none
}

func (s serviceStatus) route(mux *http.ServeMux, logger *slog.Logger) {
	mux.HandleFunc("GET /status", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) (httpapi.Status, error) {
		return s.read(r.Context()), nil
	}))
}

func (s serviceStatus) read(ctx context.Context) httpapi.Status {
	ctx, cancel := context.WithTimeout(ctx, statusBudget)
	defer cancel()
	st := httpapi.Status{Service: s.name, Breakers: []httpapi.BreakerStatus{}}
	var problems []string
	if err := s.ready(ctx); err != nil {
		problems = append(problems, err.Error())
	}
	note := func(what string, err error) {
		// Once not ready (the database away, most often), what cannot be read for the same
		// reason says nothing more.
		if len(problems) == 0 {
			problems = append(problems, what+": "+err.Error())
		}
	}
	if n, age, err := s.outbox.Backlog(ctx); err != nil {
		note("outbox backlog", err)
	} else if st.OutboxBacklog = n; n > 0 {
		st.OutboxOldestSeconds = new(age.Seconds())
	}
	if n, err := s.dead.Count(ctx); err != nil {
		note("dead letters", err)
	} else {
		st.DeadLetters = n
	}
	cs := s.consumer.Stats()
	st.ConsumerQueued = max(cs.Queued, 0)
	if cs.Lag >= 0 {
		st.ConsumerLagSeconds = new(cs.Lag.Seconds())
	}
	if s.breakers != nil {
		st.Breakers = s.breakers()
	}
	st.Ready, st.Error = len(problems) == 0, strings.Join(problems, "; ")
	return st
}

// breakerStatus names a gobreaker state as the API does.
func breakerStatus(name string, state gobreaker.State) httpapi.BreakerStatus {
	b := httpapi.BreakerStatus{Name: name, State: httpapi.BreakerClosed}
	switch state {
	case gobreaker.StateHalfOpen:
		b.State = httpapi.BreakerHalfOpen
	case gobreaker.StateOpen:
		b.State = httpapi.BreakerOpen
	}
	return b
}
