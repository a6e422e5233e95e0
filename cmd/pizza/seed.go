package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
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
// It holds one connection: the check and the inserts are one transaction, under the lock.
func seedStores(ctx context.Context, pool *pgxpool.Pool) ([]store.Store, error) {
	var out []store.Store
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, seedLock); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stores)`).Scan(&exists); err != nil || exists {
			return err
		}
		for _, in := range devStores {
			var st store.Store
			err := tx.QueryRow(ctx, `INSERT INTO stores (name, region, open) VALUES ($1, $2, $3) RETURNING id::text, name, region, open`,
				in.Name, in.Region, *in.Open).Scan(&st.ID, &st.Name, &st.Region, &st.Open)
			if err != nil {
				return fmt.Errorf("%s: %w", in.Name, err)
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
