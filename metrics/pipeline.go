// Package metrics turns what collider does and what it keeps into Prometheus
// series: the pipeline's runs, steps, deliveries and batches as they happen
// (Pipeline, a jobs.Observer), and the state of the store — the last runs,
// the feeds, the leads — read on every scrape (State). The api package
// serves them at /metrics; cmd wires them to the pipeline and the server.
//
// Labels name what the structured log names the same way (model, feed,
// step, status, trigger, version); the identifiers the log carries (run,
// delivery, batch) are never labels, and no series carries a person, an ID
// number or a lead number.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"collider/casebook"
	"collider/feeds"
	"collider/jobs"
)

// What the series are pre-set to zero for, so that the first failure after
// a start is an increase Prometheus sees rather than a new series.
var (
	triggers      = []string{"schedule", "api", "cli"} // who starts runs: jobs' schedule, the API, the command line
	runStatuses   = []string{jobs.RunSucceeded, jobs.RunPartial, jobs.RunFailed, jobs.RunInterrupted}
	steps         = []string{"discover", "load", "sandbox", "scope", "model", "clues", "publish", "route"} // jobs/pipeline.go
	stepStatuses  = []string{"succeeded", "failed"}
	deliveryKinds = []string{jobs.StatusLoaded, jobs.StatusFailed}
)

// Pipeline holds the series of the pipeline's work, kept current by the
// pipeline itself through the jobs.Observer methods. Counters start at zero
// when the process starts, as Prometheus expects of counters.
type Pipeline struct {
	runs        *prometheus.CounterVec
	stepSeconds *prometheus.HistogramVec
	stepRows    *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	rowsRead    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	flagged     *prometheus.CounterVec
	issued      *prometheus.CounterVec
	suppressed  *prometheus.CounterVec

	inProgress *prometheus.Desc
	percent    *prometheus.Desc

	mu       sync.Mutex
	running  bool
	progress jobs.Progress
}

var _ jobs.Observer = (*Pipeline)(nil)

// NewPipeline returns the pipeline's series; register it on the server's
// registry and set it as the pipeline's Observer.
func NewPipeline() *Pipeline {
	m := &Pipeline{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_runs_total", Help: "Pipeline runs finished, by trigger (schedule, api, cli) and status (succeeded, partial, failed, interrupted).",
		}, []string{"trigger", "status"}),
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "collider_run_step_seconds", Help: "Duration of the pipeline's steps (discover, load: one delivery, model: one model, publish, route) by status.",
			Buckets: []float64{.1, .5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200},
		}, []string{"step", "status"}),
		stepRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_run_step_rows_total", Help: "Rows of the pipeline's steps, as the run record counts them: deliveries found, rows loaded, settlements flagged, clues published and routed.",
		}, []string{"step"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_deliveries_total", Help: "Deliveries a run tried, by feed and status (loaded, failed); a delivery seen before is skipped and not counted.",
		}, []string{"feed", "status"}),
		rowsRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_delivery_rows_total", Help: "Rows in the files of loaded deliveries, by feed.",
		}, []string{"feed"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_rejected_rows_total", Help: "Rows of loaded deliveries rejected, by feed and reason code; a row with bad cells of two reasons counts under each.",
		}, []string{"feed", "reason"}),
		flagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_model_flagged_settlements_total", Help: "Settlements a model flagged in runs that published, already issued ones included.",
		}, []string{"model"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_model_issued_settlements_total", Help: "Settlements a model issued in new clues of published batches.",
		}, []string{"model"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collider_model_suppressed_settlements_total", Help: "Settlements a model flagged that a suppression held back, in runs that published.",
		}, []string{"model"}),
		inProgress: prometheus.NewDesc("collider_run_in_progress", "1 while a run is in progress, else 0.", nil, nil),
		percent: prometheus.NewDesc("collider_run_progress_percent",
			"Percent done of the running step, while it reports one (a delivery's load), as GET /api/v1/runs/{id} shows it.", []string{"step"}, nil),
	}
	for _, t := range triggers {
		for _, s := range runStatuses {
			m.runs.WithLabelValues(t, s)
		}
	}
	for _, st := range steps {
		m.stepRows.WithLabelValues(st)
		for _, s := range stepStatuses {
			m.stepSeconds.WithLabelValues(st, s)
		}
	}
	for _, f := range feeds.Names() {
		m.rowsRead.WithLabelValues(f)
		for _, s := range deliveryKinds {
			m.deliveries.WithLabelValues(f, s)
		}
	}
	return m
}

func (m *Pipeline) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.runs, m.stepSeconds, m.stepRows, m.deliveries, m.rowsRead, m.rejected, m.flagged, m.issued, m.suppressed}
}

// Describe implements prometheus.Collector.
func (m *Pipeline) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.vecs() {
		c.Describe(ch)
	}
	ch <- m.inProgress
	ch <- m.percent
}

// Collect implements prometheus.Collector.
func (m *Pipeline) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.vecs() {
		c.Collect(ch)
	}
	m.mu.Lock()
	running, p := m.running, m.progress
	m.mu.Unlock()
	var v float64
	if running {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(m.inProgress, prometheus.GaugeValue, v)
	if running && p.Percent != nil {
		ch <- prometheus.MustNewConstMetric(m.percent, prometheus.GaugeValue, *p.Percent, p.Step)
	}
}

// RunStarted implements jobs.Observer.
func (m *Pipeline) RunStarted(trigger string) {
	m.mu.Lock()
	m.running, m.progress = true, jobs.Progress{}
	m.mu.Unlock()
}

// Progress implements jobs.Observer.
func (m *Pipeline) Progress(p jobs.Progress) {
	m.mu.Lock()
	m.progress = p
	m.mu.Unlock()
}

// StepFinished implements jobs.Observer.
func (m *Pipeline) StepFinished(step, status string, rows int64, seconds float64) {
	m.stepSeconds.WithLabelValues(step, status).Observe(seconds)
	m.stepRows.WithLabelValues(step).Add(float64(rows))
}

// DeliveryFinished implements jobs.Observer.
func (m *Pipeline) DeliveryFinished(r jobs.LoadResult) {
	if r.Status == jobs.StatusSkipped {
		return
	}
	m.deliveries.WithLabelValues(r.Feed, r.Status).Inc()
	if r.Status != jobs.StatusLoaded {
		return
	}
	m.rowsRead.WithLabelValues(r.Feed).Add(float64(r.Rows))
	for reason, n := range r.RejectedBy {
		m.rejected.WithLabelValues(r.Feed, reason).Add(float64(n))
	}
}

// Published implements jobs.Observer.
func (m *Pipeline) Published(_ casebook.Batch, models []casebook.ModelRun) {
	for _, r := range models {
		m.flagged.WithLabelValues(r.Model).Add(float64(r.Flagged))
		m.issued.WithLabelValues(r.Model).Add(float64(r.Settlements))
		m.suppressed.WithLabelValues(r.Model).Add(float64(r.Suppressed))
	}
}

// RunFinished implements jobs.Observer.
func (m *Pipeline) RunFinished(trigger, status string) {
	m.runs.WithLabelValues(trigger, status).Inc()
	m.mu.Lock()
	m.running, m.progress = false, jobs.Progress{}
	m.mu.Unlock()
}
