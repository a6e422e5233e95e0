package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
)

// Each pool's collector reports its own acquires, and its waits once a caller found every
// connection taken; several pools share one registry.
func TestPoolCollectorCountsWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	one := dbtest.NewOneConnPool(t, db.Store)
	_, other := dbtest.NewDatabase(t, db.Store)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(db.NewPoolCollector(one, "store", "main")))
	require.NoError(t, reg.Register(db.NewPoolCollector(other, "store", "relay")))

	held, err := one.Acquire(ctx)
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() {
		c, err := one.Acquire(ctx) // the only connection is held: this waits
		if err == nil {
			c.Release()
		}
		waited <- err
	}()
	require.Eventually(t, func() bool { return one.Stat().EmptyAcquireCount() > 0 }, 10*time.Second, time.Millisecond)
	inUse, err := testutil.GatherAndCount(reg, "pizza_db_pool_connections")
	require.NoError(t, err)
	require.Equal(t, 6, inUse, "acquired, idle and max for each of the two pools")
	held.Release()
	require.NoError(t, <-waited)

	families, err := reg.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			values[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	require.GreaterOrEqual(t, values["pizza_db_pool_acquire_waits_total,pool=main,service=store"], 1.0)
	require.GreaterOrEqual(t, values["pizza_db_pool_acquires_total,pool=main,service=store"], 2.0)
	require.Equal(t, 1.0, values["pizza_db_pool_connections,pool=main,service=store,state=max"])
	require.Zero(t, values["pizza_db_pool_acquire_waits_total,pool=relay,service=store"])
}
