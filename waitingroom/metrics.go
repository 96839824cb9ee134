package waitingroom

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the waiting room's Prometheus collectors.
type Metrics struct {
	Joins          *prometheus.CounterVec // by result
	Admitted       prometheus.Counter
	Skipped        prometheus.Counter
	TicketsExpired prometheus.Counter
	QueueLength    *prometheus.GaugeVec // by sale (from the leader)
	ActiveTickets  *prometheus.GaugeVec // by sale (from the leader)
	Sockets        prometheus.Gauge
	SocketsDropped *prometheus.CounterVec // by reason
	FramesSent     prometheus.Counter
	// Leader is 1 per sale this node's admitter leads.
	Leader *prometheus.GaugeVec
}

// NewMetrics makes and registers the collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Joins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_joins_total",
			Help: "Join requests by result."}, []string{"result"}),
		Admitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_admissions_total",
			Help: "Shoppers admitted by this node's admitter."}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_skipped_total",
			Help: "Absent shoppers skipped at the head by this node's admitter."}),
		TicketsExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_tickets_expired_total",
			Help: "Tickets that expired unused, ended by this node's admitter."}),
		QueueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_queue_length",
			Help: "Waiters in the queue, as the sale's leader last saw it."}, []string{"sale"}),
		ActiveTickets: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_active_tickets",
			Help: "Live tickets, as the sale's leader last saw it."}, []string{"sale"}),
		Leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_admitter_leader",
			Help: "1 for each sale this node's admitter leads (ticks); a sale with no series on any node has no leader."}, []string{"sale"}),
		Sockets: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashsale_websocket_connections",
			Help: "Open shopper WebSockets on this node."}),
		SocketsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_websocket_dropped_total",
			Help: "WebSockets closed by the server, by reason."}, []string{"reason"}),
		FramesSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_websocket_frames_total",
			Help: "Frames queued to shopper WebSockets."}),
	}
	for _, r := range []string{KindWaiting, KindAdmitted, KindPurchased, KindPrequeue, KindClosed, KindSoldOut, KindNotOpen, "unauthorized", "error"} {
		m.Joins.WithLabelValues(r) // export every result from the start, at 0
	}
	for _, r := range []string{"replaced", "slow"} {
		m.SocketsDropped.WithLabelValues(r) // every reason from the start, at 0
	}
	reg.MustRegister(m.Joins, m.Admitted, m.Skipped, m.TicketsExpired, m.QueueLength,
		m.ActiveTickets, m.Leader, m.Sockets, m.SocketsDropped, m.FramesSent)
	return m
}
