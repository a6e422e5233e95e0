package bench

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/outbox"
)

// runBaseline drives the accept path's SQL with pgx alone: the availability SELECT on the store
// database, then one transaction on the order database inserting the order and its outbox job.
//
// Its SQL is written here by hand on purpose, not taken from services/order or outbox: it is the
// bare minimum the accept path must do (one indexed read, one INSERT of the order, one INSERT of
// its River job), the machine's own limit the system is compared with. Sharing the services'
// statements would make the baseline move with them.
func runBaseline(ctx context.Context, sys System, s Settings) (*phase, error) {
	storePool, err := pgxpool.New(ctx, sys.database(db.Store))
	if err != nil {
		return nil, err
	}
	defer storePool.Close()
	orderPool, err := pgxpool.New(ctx, sys.database(db.Order))
	if err != nil {
		return nil, err
	}
	defer orderPool.Close()
	for r := range s.Regions {
		if _, err := storePool.Exec(ctx, `INSERT INTO stores (name, region, open) VALUES ($1, $2, true), ($1 || '-2', $2, true)`,
			fmt.Sprint("bench-", r), fmt.Sprint("region-", r)); err != nil {
			return nil, err
		}
	}
	ev, err := outbox.NewEvent("order.placed", "1", "order", map[string]any{"customerId": "c", "pizza": "bench", "qty": 1, "region": "region-0"})
	if err != nil {
		return nil, err
	}
	args, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	p := drive(ctx, s, func(ctx context.Context, c int) error {
		region := fmt.Sprint("region-", c%s.Regions)
		var open bool
		if err := storePool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stores WHERE region = $1 AND open)`, region).Scan(&open); err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, orderPool, func(tx pgx.Tx) error {
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO orders (customer_id, pizza, qty, region, status) VALUES ($1, 'bench', 1, $2, 'ORDERED') RETURNING id`,
				fmt.Sprint("c", c), region).Scan(&id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state) VALUES ($1, 'outbox_relay', 32767, 'outbox', 'available')`, args)
			return err
		})
	})
	// The system starts from empty tables; nothing of the baseline is relayed.
	if _, err := orderPool.Exec(ctx, `TRUNCATE orders, river_job`); err != nil {
		return nil, err
	}
	if _, err := storePool.Exec(ctx, `TRUNCATE store_orders, stores`); err != nil {
		return nil, err
	}
	return p, nil
}
