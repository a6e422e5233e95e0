package store

import (
	"log/slog"
	"net/http"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
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
	h := func(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
		return httpapi.Handle(logger, f)
	}
	mux.HandleFunc("POST /stores", h(func(w http.ResponseWriter, r *http.Request) error {
		var in RegisterInput
		if err := httpapi.ReadJSON(w, r, &in); err != nil {
			return err
		}
		st, err := s.Register(r.Context(), in)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusCreated, st)
		return nil
	}))
	mux.HandleFunc("GET /stores", h(func(w http.ResponseWriter, r *http.Request) error {
		stores, err := s.List(r.Context(), r.URL.Query().Get("region"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, stores)
		return nil
	}))
	mux.HandleFunc("GET /stores/{id}", h(func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return err
		}
		st, err := s.Get(r.Context(), id)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
		return nil
	}))
	mux.HandleFunc("PUT /stores/{id}/open", h(func(w http.ResponseWriter, r *http.Request) error {
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
	mux.HandleFunc("GET /availability", h(func(w http.ResponseWriter, r *http.Request) error {
		region, err := httpapi.Text("region", r.URL.Query().Get("region"), 64)
		if err != nil {
			return err
		}
		open, err := s.AnyOpen(r.Context(), region)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, Availability{Open: open})
		return nil
	}))
	mux.HandleFunc("GET /stores/{id}/orders", h(func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return err
		}
		orders, err := s.Orders(r.Context(), id, lifecycle.Status(r.URL.Query().Get("status")))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, orders)
		return nil
	}))
	mux.HandleFunc("GET /stores/{id}/board", h(func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpapi.PathID(r, "id")
		if err != nil {
			return err
		}
		orders, err := s.Board(r.Context(), id)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, orders)
		return nil
	}))
	mux.HandleFunc("GET /store-orders/{orderId}", h(func(w http.ResponseWriter, r *http.Request) error {
		o, err := s.Order(r.Context(), r.PathValue("orderId"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	mux.HandleFunc("POST /store-orders/{orderId}/cooked", h(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := httpapi.ParseID(r.PathValue("orderId")); err != nil {
			return errs.Errorf(errs.NotFound, "no store order %q", r.PathValue("orderId"))
		}
		o, err := s.MarkCooked(r.Context(), r.PathValue("orderId"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	mux.HandleFunc("POST /store-orders/{orderId}/cancel", h(func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.Cancel(r.Context(), r.PathValue("orderId"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, c)
		return nil
	}))
}

// Availability answers the availability check.
type Availability struct {
	Open bool `json:"open"`
}
