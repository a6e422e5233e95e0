// Package graph is the BFF: the public GraphQL API over the services' internal HTTP APIs, with
// authentication, authorization, limits, and live myPage subscriptions. It holds no business rules.
package graph

//go:generate go tool gqlgen generate

import "log/slog"

// Resolver is the root resolver: the services' clients and the subscription hub.
type Resolver struct {
	be     Backends
	hub    *Hub
	logger *slog.Logger
}
