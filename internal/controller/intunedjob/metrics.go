package intunedjob

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// Delivery accounting and freshness metrics, on the manager's /metrics
// (docs/data-completeness.md has the alert rules; config/prometheus the
// PrometheusRule). Every series is labelled by the IntunedJob's namespace
// and name, and removed when the object goes.
var (
	jobLabels = []string{"namespace", "name"}

	expectedResults = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "intunedjob_delivery_expected_results",
		Help: "Results of the job's tracked JobRuns that should have reached its WebhookReceiver (JobRuns whose count is known).",
	}, jobLabels)
	storedResults = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "intunedjob_delivery_stored_results",
		Help: "Results of the job's tracked JobRuns that its WebhookReceiver stored (of those expected).",
	}, jobLabels)
	missingResults = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "intunedjob_delivery_missing_results",
		Help: "Expected results of the job's tracked JobRuns that are missing after Intuned's retry window (Gap or Backfilling).",
	}, jobLabels)
	backfilledResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "intunedjob_backfilled_results_total",
		Help: "Results the operator stored in the job's WebhookReceiver from Intuned's results files.",
	}, jobLabels)
	staleJobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "intunedjob_stale",
		Help: "1 while the job's condition Fresh is False (a scheduled run did not start, or a finished JobRun stored nothing).",
	}, jobLabels)
)

func init() {
	metrics.Registry.MustRegister(expectedResults, storedResults, missingResults, backfilledResults, staleJobs)
}

// observeDeliveries exports the accounting of the tracked JobRuns.
func observeDeliveries(job *intunedv1alpha1.IntunedJob, list []intunedv1alpha1.JobRunDelivery) {
	var expected, stored, missing int64
	for _, d := range list {
		if d.Expected == nil || d.Stored == nil {
			continue
		}
		expected += *d.Expected
		stored += min(*d.Stored, *d.Expected)
		if d.State == intunedv1alpha1.DeliveryGap || d.State == intunedv1alpha1.DeliveryBackfilling {
			missing += *d.Missing
		}
	}
	expectedResults.WithLabelValues(job.Namespace, job.Name).Set(float64(expected))
	storedResults.WithLabelValues(job.Namespace, job.Name).Set(float64(stored))
	missingResults.WithLabelValues(job.Namespace, job.Name).Set(float64(missing))
}

func observeFreshness(job *intunedv1alpha1.IntunedJob, stale bool) {
	v := 0.0
	if stale {
		v = 1
	}
	staleJobs.WithLabelValues(job.Namespace, job.Name).Set(v)
}

// forgetJobMetrics removes the job's series once the object is gone.
func forgetJobMetrics(job *intunedv1alpha1.IntunedJob) {
	for _, v := range []*prometheus.MetricVec{expectedResults.MetricVec, storedResults.MetricVec, missingResults.MetricVec, backfilledResults.MetricVec, staleJobs.MetricVec} {
		v.DeleteLabelValues(job.Namespace, job.Name)
	}
}
