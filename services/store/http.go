package store

import (
	"log/slog"
	"net/http"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/input"
	"github.com/1588-pizza/pizza/lifecycle"
)

// Routes serves the store service's internal API:
//
//	POST /stores                          register {name, region, open}
//	GET  /stores?region=R                 list (all regions without R)
//	GET  /stores/{id}                     one store
//	PUT  /stores/{id}/open                {open}: open or close
//	GET  /availability?region=R           {open}: is any store of R open?
//	GET  /stores/{id}/orders?status=S     the store's orders
//	GET  /stores/{id}/board               its unfinished orders and those changed in the last day
//	GET  /store-orders/{orderId}          one store order
//	POST /store-orders/{orderId}/cooked   mark cooked
//	POST /store-orders/{orderId}/cancel   decide a cancel (the order service asks before it cancels)
func (s *Service) Routes(mux *http.ServeMux, logger *slog.Logger) {
	type none = httpapi.NoBody
	mux.HandleFunc("POST /stores", httpapi.JSON(logger, http.StatusCreated, func(r *http.Request, in RegisterInput) (Store, error) {
		return s.Register(r.Context(), in)
	}))
	mux.HandleFunc("GET /stores", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) ([]Store, error) {
		return s.List(r.Context(), r.URL.Query().Get("region"))
	}))
	mux.HandleFunc("GET /stores/{id}", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) (Store, error) {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return Store{}, err
		}
		return s.Get(r.Context(), id)
	}))
	// Not JSON's shape: the store's id is checked before the body is read.
	mux.HandleFunc("PUT /stores/{id}/open", httpapi.Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return err
		}
		var in struct {
			Open *bool `json:"open"`
		}
		if err := httpapi.ReadJSON(w, r, &in); err != nil {
			return err
		}
		if in.Open == nil {
			return errs.Invalid("open", "is required")
		}
		st, err := s.SetOpen(r.Context(), id, *in.Open)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
		return nil
	}))
	mux.HandleFunc("GET /availability", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) (Availability, error) {
		region, err := input.Text("region", r.URL.Query().Get("region"), 64)
		if err != nil {
			return Availability{}, err
		}
		open, err := s.AnyOpen(r.Context(), region)
		return Availability{Open: open}, err
	}))
	mux.HandleFunc("GET /stores/{id}/orders", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) ([]Order, error) {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return nil, err
		}
		return s.Orders(r.Context(), id, lifecycle.Status(r.URL.Query().Get("status")))
	}))
	mux.HandleFunc("GET /stores/{id}/board", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) ([]Order, error) {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return nil, err
		}
		return s.Board(r.Context(), id)
	}))
	mux.HandleFunc("GET /store-orders/{orderId}", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) (Order, error) {
		return s.Order(r.Context(), r.PathValue("orderId"))
	}))
	mux.HandleFunc("POST /store-orders/{orderId}/cooked", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) (Order, error) {
		if _, err := input.ParseID(r.PathValue("orderId")); err != nil {
			return Order{}, errs.Errorf(errs.NotFound, "no store order %q", r.PathValue("orderId"))
		}
		return s.MarkCooked(r.Context(), r.PathValue("orderId"))
	}))
	mux.HandleFunc("POST /store-orders/{orderId}/cancel", httpapi.JSON(logger, http.StatusOK, func(r *http.Request, _ none) (Cancellation, error) {
		return s.Cancel(r.Context(), r.PathValue("orderId"))
	}))
}

// Availability answers the availability check.
type Availability struct {
	Open bool `json:"open"`
}
