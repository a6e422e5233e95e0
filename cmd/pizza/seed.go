package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/services/store"
)

// devStores are what a first run in development registers, so that a newcomer has something to
// order from: the two regions of the call center's original walkthrough. An order in 강남구 is
// accepted by 강남점; one in 종로구 comes back REJECTED (NO_STORE_OPEN) until 종로점's master
// opens it (setStoreOpen), which shows both outcomes of the availability check.
var devStores = []store.RegisterInput{
	{Name: "강남점", Region: "강남구", Open: ptr(true)},
	{Name: "종로점", Region: "종로구", Open: ptr(false)},
}

func ptr[T any](v T) *T { return &v }

// seedLock is the advisory lock under which store replicas starting at once decide to seed: one
// registers the stores, the others then find them.
const seedLock = 1588_0001

// seedStores registers devStores when the store database has no store at all, and returns what
// it registered (nothing when there were stores already). The caller runs it in development only.
func seedStores(ctx context.Context, pool *pgxpool.Pool, svc *store.Service) ([]store.Store, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, seedLock); err != nil {
		return nil, err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, seedLock) }()
	existing, err := svc.List(ctx, "")
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		return nil, nil
	}
	var out []store.Store
	for _, in := range devStores {
		st, err := svc.Register(ctx, in)
		if err != nil {
			return out, fmt.Errorf("%s: %w", in.Name, err)
		}
		out = append(out, st)
	}
	return out, nil
}
