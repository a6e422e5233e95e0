package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/outbox"
)

// ServeTimeline adds GET /timeline/{orderId} to a service's internal API: its part of one order's
// timeline, the events its outbox wrote and those its consumer applied (outbox.ReadTimeline on
// its database). Every service registers it; the BFF joins the answers (Client.Timeline).
func ServeTimeline(mux *http.ServeMux, pool *pgxpool.Pool, logger *slog.Logger) {
	mux.HandleFunc("GET /timeline/{orderId}", JSON(logger, http.StatusOK, func(r *http.Request, _ NoBody) (outbox.Timeline, error) {
		if _, err := input.ParseID(r.PathValue("orderId")); err != nil {
			return outbox.Timeline{}, errs.Errorf(errs.NotFound, "no order %q", r.PathValue("orderId"))
		}
		return outbox.ReadTimeline(r.Context(), pool, r.PathValue("orderId"))
	}))
}

// Timeline asks the service for its part of an order's timeline (GET /timeline/{orderId}).
func (c *Client) Timeline(ctx context.Context, orderID string) (outbox.Timeline, error) {
	var tl outbox.Timeline
	err := c.Do(ctx, http.MethodGet, "/timeline/"+url.PathEscape(orderID), nil, &tl)
	return tl, err
}
