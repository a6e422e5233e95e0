package httpapi

import (
	"context"
	"log/slog"
	"net/http"
)

// Status is what every service answers on GET /status: how the replica that answered is doing,
// in the numbers its metrics have, for the admin console's system page (asked every few seconds:
// it is cheap). It answers 200 even when the replica is not ready, with what it could learn.
type Status struct {
	Service string `json:"service"`
	// Ready is what /readyz says; Error says why not, and what could not be read.
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
	// OutboxBacklog counts the events its outbox holds that RabbitMQ has not confirmed yet, and
	// OutboxOldestSeconds is the oldest one's age (nil when there are none).
	OutboxBacklog       int64    `json:"outboxBacklog"`
	OutboxOldestSeconds *float64 `json:"outboxOldestSeconds"`
	// ConsumerQueued counts the messages waiting in its queue when its consumer last looked, and
	// ConsumerLagSeconds is from the last event it applied being written to its application
	// (nil before the first).
	ConsumerQueued     int64    `json:"consumerQueued"`
	ConsumerLagSeconds *float64 `json:"consumerLagSeconds"`
	// DeadLetters counts its parked dead letters, neither replayed nor discarded.
	DeadLetters int64 `json:"deadLetters"`
	// Breakers are its circuit breakers (the order service's calls to the store).
	Breakers []BreakerStatus `json:"breakers"`
}

// BreakerStatus is one circuit breaker and its state: BreakerClosed, BreakerHalfOpen or
// BreakerOpen.
type BreakerStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// The states of a breaker.
const (
	BreakerClosed   = "CLOSED"
	BreakerHalfOpen = "HALF_OPEN"
	BreakerOpen     = "OPEN"
)

// ServeStatus adds GET /status to a service's internal API: what read returns, always 200.
func ServeStatus(mux *http.ServeMux, logger *slog.Logger, read func(context.Context) Status) {
	mux.HandleFunc("GET /status", JSON(logger, http.StatusOK, func(r *http.Request, _ NoBody) (Status, error) {
		return read(r.Context()), nil
	}))
}

// Status asks the service how it is doing (GET /status).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.Do(ctx, http.MethodGet, "/status", nil, &st)
	return st, err
}
