package checkout

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the checkout's Prometheus collectors.
type Metrics struct {
	Checkouts *prometheus.CounterVec // by result code
	Settles   *prometheus.CounterVec // by outcome
}

// NewMetrics makes and registers the collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Checkouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_checkouts_total",
			Help: "Checkout requests by result (created, or the error code)."}, []string{"result"}),
		Settles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_order_settles_total",
			Help: "Held orders settled, by new status."}, []string{"status"}),
	}
	reg.MustRegister(m.Checkouts, m.Settles)
	return m
}
