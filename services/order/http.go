package order

import (
	"log/slog"
	"net/http"

	"github.com/1588-pizza/pizza/httpapi"
)

// Routes serves the order service's internal API:
//
//	POST /orders               place {customerId, pizza, qty, region, idempotencyKey?}
//	GET  /orders/{id}          one order
//	POST /orders/{id}/cancel   cancel
func (s *Service) Routes(mux *http.ServeMux, logger *slog.Logger) {
	mux.HandleFunc("POST /orders", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, in PlaceInput) (Order, error) {
		return s.Place(r.Context(), in)
	}))
	mux.HandleFunc("GET /orders/{id}", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) (Order, error) {
		return s.Get(r.Context(), r.PathValue("id"))
	}))
	mux.HandleFunc("POST /orders/{id}/cancel", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ httpapi.NoBody) (Order, error) {
		return s.Cancel(r.Context(), r.PathValue("id"))
	}))
}
