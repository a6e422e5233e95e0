package graph

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/99designs/gqlgen/graphql"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/outbox"
)

// deadLetterService is the named service's client (every service's is in Backends.Services), or
// BAD_USER_INPUT naming the services there are.
func (r *Resolver) deadLetterService(name string) (ServiceAPI, error) {
	if c, ok := r.be.Services[name]; ok {
		return c, nil
	}
	return nil, errs.Invalid("service", "unknown service %q (want one of %s)", name, strings.Join(r.serviceNames(), ", "))
}

func (r *Resolver) serviceNames() []string {
	names := make([]string, 0, len(r.be.Services))
	for name := range r.be.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// fromService names the service an error came from.
func fromService(service string, err error) error {
	var ae *errs.Error
	if errors.As(err, &ae) {
		return &errs.Error{Code: ae.Code, Field: ae.Field, Message: service + ": " + ae.Message}
	}
	return fmt.Errorf("%s: %w", service, err)
}

// deadLetters asks one service, or every service at once, for its oldest dead letters and
// merges them, oldest first. With every service asked, one that fails is reported beside the
// others' dead letters.
func (r *Resolver) deadLetters(ctx context.Context, service *string, limit *int) ([]*model.DeadLetter, error) {
	n := httpapi.DefaultDeadLetterLimit
	if limit != nil {
		n = *limit
	}
	if n < 1 || n > httpapi.MaxDeadLetterLimit {
		return nil, errs.Invalid("limit", "must be from 1 to %d", httpapi.MaxDeadLetterLimit)
	}
	names := r.serviceNames()
	if service != nil {
		if _, err := r.deadLetterService(*service); err != nil {
			return nil, err
		}
		names = []string{*service}
	}
	lists := make([][]outbox.DeadLetter, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			lists[i], errs[i] = r.be.Services[name].DeadLetters(ctx, n)
		})
	}
	wg.Wait()
	var all []outbox.DeadLetter
	for i, err := range errs {
		if err != nil {
			if service != nil {
				return nil, fromService(names[i], err)
			}
			graphql.AddError(ctx, fromService(names[i], err))
			continue
		}
		all = append(all, lists[i]...)
	}
	slices.SortStableFunc(all, func(a, b outbox.DeadLetter) int {
		if c := a.DeadLetteredAt.Compare(b.DeadLetteredAt); c != 0 {
			return c
		}
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
	out := make([]*model.DeadLetter, 0, min(n, len(all)))
	for _, dl := range all[:min(n, len(all))] {
		out = append(out, toDeadLetter(dl))
	}
	return out, nil
}

func toDeadLetter(dl outbox.DeadLetter) *model.DeadLetter {
	orNull := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return &model.DeadLetter{
		ID: deadLetterID(dl.Service, strconv.FormatInt(dl.ID, 10)), Service: dl.Service, EventID: orNull(dl.EventID), Type: orNull(dl.Type),
		RoutingKey: dl.RoutingKey, OrderID: orNull(dl.OrderID), Reason: dl.Reason, Error: orNull(dl.Error),
		Attempts: dl.Attempts, DeadLetteredAt: dl.DeadLetteredAt, Body: dl.Body,
	}
}

// deadLetterID is a dead letter's id in the API: its service's name and its id there, so that
// ids are unique across services (a client's normalized cache keys objects by type and id).
func deadLetterID(service, local string) string { return service + ":" + local }

// changeDeadLetters asks the service to replay (replay true) or discard dead letters: all of
// them, or those ids name (as deadLetters lists them, "delivery:3", or by the service's own id, "3").
func (r *Resolver) changeDeadLetters(ctx context.Context, service string, replay bool, ids []string, all bool) (*model.DeadLetterOutcome, error) {
	c, err := r.deadLetterService(service)
	if err != nil {
		return nil, err
	}
	local := make([]string, len(ids))
	for i, id := range ids {
		local[i] = strings.TrimPrefix(id, service+":") // another service's id stays whole: NOT_FOUND here
	}
	var done []string
	if replay {
		done, err = c.ReplayDeadLetters(ctx, local, all)
	} else {
		done, err = c.DiscardDeadLetters(ctx, local)
	}
	if err != nil {
		if code := errs.CodeOf(err); code == errs.NotFound || code == errs.BadUserInput {
			return nil, err // names the service already
		}
		return nil, fromService(service, err)
	}
	qualified := make([]string, len(done))
	for i, id := range done {
		qualified[i] = deadLetterID(service, id)
	}
	return &model.DeadLetterOutcome{Service: service, Count: len(qualified), Ids: qualified}, nil
}
