package order

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/1588-pizza/pizza/services/api"
)

// Routes serves the order service's internal API:
//
//	POST /orders               place {customerId, pizza, qty, region, idempotencyKey?}
//	POST /orders/batch         place up to MaxBatch at once: [{...}, ...] answers, in order,
//	                           [{"order": {...}} or {"error": {code, message, field?}}, ...]
//	GET  /orders/{id}          one order
//	POST /orders/{id}/cancel   cancel
func (s *Service) Routes(mux *http.ServeMux, logger *slog.Logger) {
	h := func(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
		return api.Handle(logger, f)
	}
	mux.HandleFunc("POST /orders", h(func(w http.ResponseWriter, r *http.Request) error {
		var in PlaceInput
		if err := api.ReadJSON(w, r, &in); err != nil {
			return err
		}
		o, err := s.Place(r.Context(), in)
		if err != nil {
			return err
		}
		api.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	mux.HandleFunc("POST /orders/batch", h(func(w http.ResponseWriter, r *http.Request) error {
		var ins []PlaceInput
		if err := api.ReadJSON(w, r, &ins); err != nil {
			return err
		}
		if len(ins) == 0 || len(ins) > MaxBatch {
			return api.Errorf(api.BadUserInput, "a batch holds 1 to %d placements, not %d", MaxBatch, len(ins))
		}
		// Each placement goes its own way through Place, concurrently: the group commit puts
		// them in as few transactions as they would have taken one request each.
		out := make([]PlaceResult, len(ins))
		var wg sync.WaitGroup
		for i, in := range ins {
			wg.Go(func() {
				o, err := s.Place(r.Context(), in)
				if err != nil {
					out[i].Error = api.Shown(r, logger, err)
					return
				}
				out[i].Order = &o
			})
		}
		wg.Wait()
		api.WriteJSON(w, http.StatusOK, out)
		return nil
	}))
	mux.HandleFunc("GET /orders/{id}", h(func(w http.ResponseWriter, r *http.Request) error {
		o, err := s.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		api.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	mux.HandleFunc("POST /orders/{id}/cancel", h(func(w http.ResponseWriter, r *http.Request) error {
		o, err := s.Cancel(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		api.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
}

// MaxBatch bounds the placements of one POST /orders/batch.
const MaxBatch = 64

// PlaceResult is one placement's answer in a batch: the order, or why it was not placed.
type PlaceResult struct {
	Order *Order     `json:"order,omitempty"`
	Error *api.Error `json:"error,omitempty"`
}
