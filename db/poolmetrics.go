package db

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports a connection pool's statistics, read at each scrape: how often and for
// how long callers waited for a connection (the sign of a pool too small for its load, or of work
// holding connections too long), and how many connections are in use. Its series carry the
// service and the pool's role as constant labels, so one registry takes a collector per pool.
type PoolCollector struct {
	pool                                *pgxpool.Pool
	acquires, waits, waitSeconds, conns *prometheus.Desc
}

// NewPoolCollector returns a collector for p, its series labelled with the service and the
// pool's role (such as "main" or "relay").
func NewPoolCollector(p *pgxpool.Pool, service, role string) *PoolCollector {
	l := prometheus.Labels{"service": service, "pool": role}
	return &PoolCollector{
		pool: p,
		acquires: prometheus.NewDesc("pizza_db_pool_acquires_total",
			"Connections taken from the pool.", nil, l),
		waits: prometheus.NewDesc("pizza_db_pool_acquire_waits_total",
			"Acquires that found no idle connection and waited (for one to be released, or a new one to connect).", nil, l),
		waitSeconds: prometheus.NewDesc("pizza_db_pool_acquire_seconds_total",
			"Time spent acquiring connections, waits included.", nil, l),
		conns: prometheus.NewDesc("pizza_db_pool_connections",
			"The pool's connections: acquired (in use), idle, and its maximum.", []string{"state"}, l),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquires, c.waits, c.waitSeconds, c.conns} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(st.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waitSeconds, prometheus.CounterValue, st.AcquireDuration().Seconds())
	for state, n := range map[string]int32{"acquired": st.AcquiredConns(), "idle": st.IdleConns(), "max": st.MaxConns()} {
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(n), state)
	}
}
