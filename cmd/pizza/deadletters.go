package main

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/outbox"
)

// Limits of a dead-letter listing.
const (
	defaultDeadLetterLimit = 50
	maxDeadLetterLimit     = 500
)

// deadLetterRoutes serves a service's dead letters on its internal API:
//
//	GET  /dead-letters?limit=N       the oldest N (1-500, default 50)
//	POST /dead-letters/replay        {"ids": ["1", ...]} or {"all": true}; answers {"ids": [...]}
//	POST /dead-letters/discard       {"ids": ["1", ...]}; answers {"ids": [...]}
//
// Ids that are no dead letter of the service are NOT_FOUND (field ids), naming them, and nothing
// is replayed or discarded.
func deadLetterRoutes(mux *http.ServeMux, dl *outbox.DeadLetters, logger *slog.Logger) {
	mux.HandleFunc("GET /dead-letters", httpapi.Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
		limit, err := deadLetterLimit(r.URL.Query().Get("limit"))
		if err != nil {
			return err
		}
		list, err := dl.List(r.Context(), limit)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, list)
		return nil
	}))
	mux.HandleFunc("POST /dead-letters/replay", httpapi.Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			IDs *[]string `json:"ids"`
			All bool      `json:"all"`
		}
		if err := httpapi.ReadJSON(w, r, &in); err != nil {
			return err
		}
		var ids []string
		switch {
		case in.All && in.IDs != nil:
			return errs.Invalid("ids", "give the ids to replay or all, not both")
		case !in.All && in.IDs == nil:
			return errs.Invalid("ids", "give the ids to replay, or all: true")
		case in.IDs != nil:
			if err := checkDeadLetterIDs(*in.IDs); err != nil {
				return err
			}
			ids = *in.IDs
		}
		done, err := dl.Replay(r.Context(), ids)
		return answerDeadLetters(w, done, err)
	}))
	mux.HandleFunc("POST /dead-letters/discard", httpapi.Handle(logger, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			IDs []string `json:"ids"`
		}
		if err := httpapi.ReadJSON(w, r, &in); err != nil {
			return err
		}
		if err := checkDeadLetterIDs(in.IDs); err != nil {
			return err
		}
		done, err := dl.Discard(r.Context(), in.IDs)
		return answerDeadLetters(w, done, err)
	}))
}

// deadLetterLimit reads a listing's limit: empty is the default.
func deadLetterLimit(s string) (int, error) {
	if s == "" {
		return defaultDeadLetterLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxDeadLetterLimit {
		return 0, errs.Invalid("limit", "must be a number from 1 to %d", maxDeadLetterLimit)
	}
	return n, nil
}

func checkDeadLetterIDs(ids []string) error {
	switch {
	case len(ids) == 0:
		return errs.Invalid("ids", "give at least one id")
	case len(ids) > outbox.MaxDeadLetterIDs:
		return errs.Invalid("ids", "at most %d ids at once", outbox.MaxDeadLetterIDs)
	}
	return nil
}

// answerDeadLetters writes the ids replayed or discarded, or the error with its code.
func answerDeadLetters(w http.ResponseWriter, done []int64, err error) error {
	if err != nil {
		return deadLetterError(err)
	}
	out := struct {
		IDs []string `json:"ids"`
	}{IDs: make([]string, len(done))}
	for i, id := range done {
		out.IDs[i] = strconv.FormatInt(id, 10)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// deadLetterError gives the dead letters' errors their codes.
func deadLetterError(err error) error {
	var unknown *outbox.UnknownDeadLettersError
	switch {
	case errors.As(err, &unknown):
		return &errs.Error{Code: errs.NotFound, Field: "ids", Message: unknown.Error() + "; nothing was done"}
	case errors.Is(err, outbox.ErrBrokerUnavailable):
		return errs.Errorf(errs.Unavailable, "RabbitMQ did not confirm the replay: what it did not confirm is still parked; retry shortly")
	}
	return err
}
