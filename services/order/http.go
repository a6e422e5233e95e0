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
	h := func(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
		return httpapi.Handle(logger, f)
	}
	mux.HandleFunc("POST /orders", h(func(w http.ResponseWriter, r *http.Request) error {
		var in PlaceInput
		if err := httpapi.ReadJSON(w, r, &in); err != nil {
			return err
		}
		o, err := s.Place(r.Context(), in)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	mux.HandleFunc("GET /orders/{id}", h(func(w http.ResponseWriter, r *http.Request) error {
		o, err := s.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	mux.HandleFunc("POST /orders/{id}/cancel", h(func(w http.ResponseWriter, r *http.Request) error {
		o, err := s.Cancel(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
}
