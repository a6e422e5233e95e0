package order

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// OrdersByStatus is the pizza_orders gauge: the orders the service's database holds, counted by
// status at scrape time.
func OrdersByStatus(pool *pgxpool.Pool) prometheus.Collector { return ordersByStatus{pool: pool} }

type ordersByStatus struct{ pool *pgxpool.Pool }

var ordersDesc = prometheus.NewDesc("pizza_orders", "Orders the order service holds, by status.", []string{"status"}, nil)

func (ordersByStatus) Describe(ch chan<- *prometheus.Desc) { ch <- ordersDesc }

func (o ordersByStatus) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := o.pool.Query(ctx, `SELECT status, count(*) FROM orders GROUP BY status`)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ordersDesc, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			ch <- prometheus.NewInvalidMetric(ordersDesc, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(ordersDesc, prometheus.GaugeValue, float64(n), status)
	}
}
