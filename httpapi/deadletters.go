package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/outbox"
)

// Limits of a dead-letter listing, here and in the GraphQL API and `pizza dlq`.
const (
	DefaultDeadLetterLimit = 50
	MaxDeadLetterLimit     = 500
)

// ServeDeadLetters adds a service's dead letters to its internal API (the outbox parks them in
// its database; see outbox.DeadLetters):
//
//	GET  /dead-letters?limit=N       the oldest N (1-500, default 50)
//	POST /dead-letters/replay        {"ids": ["1", ...]} or {"all": true}; answers {"ids": [...]}
//	POST /dead-letters/discard       {"ids": ["1", ...]}; answers {"ids": [...]}
//
// Ids that are no dead letter of the service are NOT_FOUND (field ids), naming them, and nothing
// is replayed or discarded.
func ServeDeadLetters(mux *http.ServeMux, dl *outbox.DeadLetters, logger *slog.Logger) {
	mux.HandleFunc("GET /dead-letters", JSON(logger, http.StatusOK, func(r *http.Request, _ NoBody) ([]outbox.DeadLetter, error) {
		limit, err := deadLetterLimit(r.URL.Query().Get("limit"))
		if err != nil {
			return nil, err
		}
		return dl.List(r.Context(), limit)
	}))
	type replayInput struct {
		IDs *[]string `json:"ids"`
		All bool      `json:"all"`
	}
	mux.HandleFunc("POST /dead-letters/replay", JSON(logger, http.StatusOK, func(r *http.Request, in replayInput) (deadLetterIDs, error) {
		var ids []string
		switch {
		case in.All && in.IDs != nil:
			return deadLetterIDs{}, errs.Invalid("ids", "give the ids to replay or all, not both")
		case !in.All && in.IDs == nil:
			return deadLetterIDs{}, errs.Invalid("ids", "give the ids to replay, or all: true")
		case in.IDs != nil:
			if err := checkDeadLetterIDs(*in.IDs); err != nil {
				return deadLetterIDs{}, err
			}
			ids = *in.IDs
		}
		return answerDeadLetters(dl.Replay(r.Context(), ids))
	}))
	type discardInput struct {
		IDs []string `json:"ids"`
	}
	mux.HandleFunc("POST /dead-letters/discard", JSON(logger, http.StatusOK, func(r *http.Request, in discardInput) (deadLetterIDs, error) {
		if err := checkDeadLetterIDs(in.IDs); err != nil {
			return deadLetterIDs{}, err
		}
		return answerDeadLetters(dl.Discard(r.Context(), in.IDs))
	}))
}

// deadLetterLimit reads a listing's limit: empty is the default.
func deadLetterLimit(s string) (int, error) {
	if s == "" {
		return DefaultDeadLetterLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxDeadLetterLimit {
		return 0, errs.Invalid("limit", "must be a number from 1 to %d", MaxDeadLetterLimit)
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

// deadLetterIDs are the ids of the dead letters a replay or discard took care of.
type deadLetterIDs struct {
	IDs []string `json:"ids"`
}

// answerDeadLetters is the answer to a replay or discard: the ids done, or the error with its code.
func answerDeadLetters(done []int64, err error) (deadLetterIDs, error) {
	if err != nil {
		return deadLetterIDs{}, deadLetterError(err)
	}
	out := deadLetterIDs{IDs: make([]string, len(done))}
	for i, id := range done {
		out.IDs[i] = strconv.FormatInt(id, 10)
	}
	return out, nil
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

// DeadLetters asks the service for its oldest parked dead letters, at most limit
// (GET /dead-letters?limit=N).
func (c *Client) DeadLetters(ctx context.Context, limit int) ([]outbox.DeadLetter, error) {
	var list []outbox.DeadLetter
	err := c.Do(ctx, http.MethodGet, "/dead-letters?limit="+strconv.Itoa(limit), nil, &list)
	return list, err
}

// ReplayDeadLetters asks the service to replay the dead letters ids names, or all of them
// (POST /dead-letters/replay), and returns the ids it replayed.
func (c *Client) ReplayDeadLetters(ctx context.Context, ids []string, all bool) ([]string, error) {
	in := map[string]any{"ids": ids}
	if all {
		in = map[string]any{"all": true}
	}
	var out deadLetterIDs
	err := c.Do(ctx, http.MethodPost, "/dead-letters/replay", in, &out)
	return out.IDs, err
}

// DiscardDeadLetters asks the service to discard the dead letters ids names
// (POST /dead-letters/discard), and returns the ids it discarded.
func (c *Client) DiscardDeadLetters(ctx context.Context, ids []string) ([]string, error) {
	var out deadLetterIDs
	err := c.Do(ctx, http.MethodPost, "/dead-letters/discard", map[string]any{"ids": ids}, &out)
	return out.IDs, err
}
