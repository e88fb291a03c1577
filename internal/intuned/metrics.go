package intuned

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the client's Prometheus metrics. Create one set per process with
// NewMetrics and pass it to every Client; a nil *Metrics records nothing.
type Metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	throttled    *prometheus.CounterVec
	throttleWait *prometheus.CounterVec
	retries      *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (for the manager,
// controller-runtime's metrics.Registry). Registering on a registry that
// already has them reuses the registered collectors, so calling it twice is
// harmless.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intuned_client_requests_total",
			Help: "HTTP requests sent to the Intuned API, by operation and status code (\"error\" when no response arrived).",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "intuned_client_request_duration_seconds",
			Help:    "Duration of single HTTP requests to the Intuned API, by operation.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intuned_client_throttled_requests_total",
			Help: "Requests that waited in the client's pacer (20/min per URI path, Retry-After).",
		}, []string{"operation"}),
		throttleWait: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intuned_client_throttle_wait_seconds_total",
			Help: "Total seconds requests waited in the client's pacer.",
		}, []string{"operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intuned_client_retries_total",
			Help: "Retried requests, by operation and the status code (or \"error\") that caused the retry.",
		}, []string{"operation", "code"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.latency, err = register(reg, m.latency); err != nil {
		return nil, err
	}
	if m.throttled, err = register(reg, m.throttled); err != nil {
		return nil, err
	}
	if m.throttleWait, err = register(reg, m.throttleWait); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector already registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// codeLabel is the status code label: the HTTP status or "error".
func codeLabel(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}

func (m *Metrics) observeRequest(op string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(op, codeLabel(status)).Inc()
	m.latency.WithLabelValues(op).Observe(d.Seconds())
}

func (m *Metrics) observeThrottle(op string, waited time.Duration) {
	if m == nil || waited <= 0 {
		return
	}
	m.throttled.WithLabelValues(op).Inc()
	m.throttleWait.WithLabelValues(op).Add(waited.Seconds())
}

func (m *Metrics) observeRetry(op string, status int) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(op, codeLabel(status)).Inc()
}
