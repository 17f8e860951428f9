package queue

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters are the queue's running totals, read by the Prometheus
// collector.
type counters struct {
	enqueued  atomic.Int64
	committed atomic.Int64 // messages made durable by group commit batches
	// deliveries by [local?][outcome]: 0 sent, 1 deferred, 2 bounced
	deliveries [2][3]atomic.Int64
	dsns       [3]atomic.Int64 // by dsnKind
}

var (
	descMessages   = prometheus.NewDesc("postern_queue_messages", "Messages in the queue.", nil, nil)
	descEnqueued   = prometheus.NewDesc("postern_queue_enqueued_total", "Messages accepted into the queue (durable).", nil, nil)
	descBatches    = prometheus.NewDesc("postern_queue_commit_batches_total", "Group commit flushes; enqueued_total divided by this is the messages per flush.", nil, nil)
	descDeliveries = prometheus.NewDesc("postern_queue_deliveries_total", "Delivery attempts per recipient, by destination and outcome.", []string{"destination", "outcome"}, nil)
	descDSNs       = prometheus.NewDesc("postern_queue_dsns_total", "Delivery status notifications queued, by action.", []string{"action"}, nil)
)

// Collector returns a Prometheus collector of the queue's size and
// counters; register it with the server's registry.
func (q *Queue) Collector() prometheus.Collector { return queueCollector{q} }

type queueCollector struct{ q *Queue }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descEnqueued, descBatches, descDeliveries, descDSNs} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	q := c.q
	q.mu.Lock()
	n := q.index.len()
	q.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descEnqueued, prometheus.CounterValue, float64(q.stats.enqueued.Load()))
	ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(q.flushes.Load()))
	for li, dest := range []string{"remote", "local"} {
		for oi, outcome := range []string{"sent", "deferred", "bounced"} {
			ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.CounterValue, float64(q.stats.deliveries[li][oi].Load()), dest, outcome)
		}
	}
	for k, action := range []string{"failed", "delayed", "delivered"} {
		ch <- prometheus.MustNewConstMetric(descDSNs, prometheus.CounterValue, float64(q.stats.dsns[k].Load()), action)
	}
}
