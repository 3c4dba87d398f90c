// This file reads the state an operator alerts on from the store on every
// scrape: when runs last ended, the last batch, when each feed last
// delivered, and the casebook's leads and feedback. These survive a restart
// because they are read from the records, not counted by the process.
package metrics

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"collider/casebook"
	"collider/domain"
	"collider/store"
)

var (
	lastRunDesc = prometheus.NewDesc("collider_last_run_timestamp_seconds",
		"When the newest run of each final status (succeeded, partial, failed, interrupted) ended.", []string{"status"}, nil)
	lastSuccessDesc = prometheus.NewDesc("collider_last_successful_run_timestamp_seconds",
		"When the newest run that published its batch (succeeded, or partial: some deliveries failed) ended; before the first, when the store was created.", nil, nil)
	lastBatchDesc = prometheus.NewDesc("collider_last_batch_timestamp_seconds",
		"When the newest batch was published.", nil, nil)
	lastBatchCluesDesc = prometheus.NewDesc("collider_last_batch_clues",
		"Clues in the newest batch.", nil, nil)
	feedLastDesc = prometheus.NewDesc("collider_feed_last_delivery_timestamp_seconds",
		"When a run took in the feed's newest complete delivery, loaded or failed (its age is time() minus this).", []string{"feed"}, nil)
	feedRejectDesc = prometheus.NewDesc("collider_feed_reject_ratio",
		"Rows rejected over rows read in the feed's newest loaded delivery.", []string{"feed"}, nil)
	leadsDesc = prometheus.NewDesc("collider_leads",
		"Leads by the city that holds them and status (new, accepted, investigating, returned, closed).", []string{"city", "status"}, nil)
	overdueDesc = prometheus.NewDesc("collider_leads_overdue",
		"Leads not closed past their due date, by the city that holds them.", []string{"city"}, nil)
	recoveredDesc = prometheus.NewDesc("collider_recovered_yuan_total",
		"Amount recovered on leads closed as confirmed, in yuan, by city.", []string{"city"}, nil)
	cluesIssuedDesc = prometheus.NewDesc("collider_clues_issued_total",
		"Clues issued, by model and version (the first 12 hex digits, as the log shows it).", []string{"model", "version"}, nil)
	cluesClosedDesc = prometheus.NewDesc("collider_clues_closed_total",
		"Clues whose lead was closed, by model, version and outcome (confirmed, dismissed, referred).", []string{"model", "version", "outcome"}, nil)
	duckdbMemoryDesc = prometheus.NewDesc("collider_duckdb_memory_bytes",
		"Memory the server's DuckDB holds, by what holds it (duckdb_memory(): BASE_TABLE, HASH_TABLE, ART_INDEX, METADATA, ...); the buffer pool's blocks of the store's tables count under BASE_TABLE.", []string{"tag"}, nil)
	duckdbTempDesc = prometheus.NewDesc("collider_duckdb_temporary_bytes",
		"Bytes the server's DuckDB has spilled to its temporary directory, by what spilled them.", []string{"tag"}, nil)
	cHeapDesc = prometheus.NewDesc("collider_c_heap_bytes",
		"What the C allocator (glibc malloc, which DuckDB allocates with) holds: in_use by its callers in its arenas, free but kept in its arenas, mapped in chunks of their own.", []string{"state"}, nil)
)

var leadStatuses = []string{casebook.StatusNew, casebook.StatusAccepted, casebook.StatusInvestigating, casebook.StatusReturned, casebook.StatusClosed}

// State is a prometheus.Collector that reads the store on every scrape,
// with a few small aggregate queries under a short timeout. A read that
// fails or times out never fails the scrape: the values of the last good
// read are served again, and collider_state_read_errors_total counts it.
type State struct {
	cb      *casebook.Casebook
	timeout time.Duration
	log     *slog.Logger
	errors  prometheus.Counter

	mu   sync.Mutex
	last []prometheus.Metric
}

// NewState reads the casebook's store (and the feeds beside it) on scrape.
func NewState(cb *casebook.Casebook, log *slog.Logger) *State {
	if log == nil {
		log = slog.Default()
	}
	return &State{cb: cb, timeout: 3 * time.Second, log: log,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "collider_state_read_errors_total", Help: "Scrapes whose read of the store failed or timed out; they served the previous values.",
		})}
}

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lastRunDesc, lastSuccessDesc, lastBatchDesc, lastBatchCluesDesc, feedLastDesc,
		feedRejectDesc, leadsDesc, overdueDesc, recoveredDesc, cluesIssuedDesc, cluesClosedDesc, duckdbMemoryDesc, duckdbTempDesc, cHeapDesc} {
		ch <- d
	}
	s.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	ms, err := s.read(ctx)
	s.mu.Lock()
	if err != nil {
		s.errors.Inc()
		s.log.Warn("metrics: reading the store", "err", err)
		ms = s.last
	} else {
		s.last = ms
	}
	s.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
	ch <- s.errors
}

// province reads the casebook's metrics across every city.
var province = casebook.User{Name: "metrics", Role: casebook.RoleProvince}

func (s *State) read(ctx context.Context) ([]prometheus.Metric, error) {
	var out []prometheus.Metric
	add := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, t, v, labels...))
	}
	db := s.cb.DB
	stamp := func(t time.Time) float64 { return float64(domain.Wall(t).UnixMilli()) / 1000 }

	// Runs: the newest end of each final status, and of a run that published.
	var published sql.NullTime
	err := eachRow(ctx, db, `SELECT status, max(finished_at) FROM casebook.runs
		WHERE status <> 'running' AND finished_at IS NOT NULL GROUP BY status ORDER BY status`, func(r *sql.Rows) error {
		var status string
		var at time.Time
		if err := r.Scan(&status, &at); err != nil {
			return err
		}
		add(lastRunDesc, prometheus.GaugeValue, stamp(at), status)
		if (status == "succeeded" || status == "partial") && (!published.Valid || at.After(published.Time)) {
			published = sql.NullTime{Time: at, Valid: true}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !published.Valid {
		if err := db.QueryRowContext(ctx, "SELECT min(applied_at) FROM casebook.schema_migrations").Scan(&published); err != nil {
			return nil, err
		}
	}
	if published.Valid {
		add(lastSuccessDesc, prometheus.GaugeValue, stamp(published.Time))
	}

	// The newest batch.
	var batchAt time.Time
	var clues int64
	switch err := db.QueryRowContext(ctx, "SELECT published_at, clues FROM casebook.batches ORDER BY batch_id DESC LIMIT 1").Scan(&batchAt, &clues); {
	case err == nil:
		add(lastBatchDesc, prometheus.GaugeValue, stamp(batchAt))
		add(lastBatchCluesDesc, prometheus.GaugeValue, float64(clues))
	case !errors.Is(err, sql.ErrNoRows):
		return nil, err
	}

	// Feeds: the newest delivery of each, and the reject ratio of its newest loaded one.
	err = eachRow(ctx, db, `SELECT feed, max(started_at),
			arg_max(CAST(rejected AS DOUBLE) / rows_read, delivery_id) FILTER (WHERE status = 'loaded' AND rows_read > 0)
		FROM deliveries GROUP BY feed ORDER BY feed`, func(r *sql.Rows) error {
		var feed string
		var at time.Time
		var ratio sql.NullFloat64
		if err := r.Scan(&feed, &at, &ratio); err != nil {
			return err
		}
		add(feedLastDesc, prometheus.GaugeValue, stamp(at), feed)
		if ratio.Valid {
			add(feedRejectDesc, prometheus.GaugeValue, ratio.Float64, feed)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// DuckDB's own memory, by tag: what of the process's resident memory
	// is the engine's and what holds it.
	err = eachRow(ctx, db, "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() ORDER BY tag", func(r *sql.Rows) error {
		var tag string
		var mem, temp int64
		if err := r.Scan(&tag, &mem, &temp); err != nil {
			return err
		}
		add(duckdbMemoryDesc, prometheus.GaugeValue, float64(mem), tag)
		add(duckdbTempDesc, prometheus.GaugeValue, float64(temp), tag)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if h, ok := store.ReadCHeap(); ok {
		add(cHeapDesc, prometheus.GaugeValue, float64(h.InUse), "in_use")
		add(cHeapDesc, prometheus.GaugeValue, float64(h.Free), "free")
		add(cHeapDesc, prometheus.GaugeValue, float64(h.Mapped), "mapped")
	}

	more, err := s.readCasebook(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

// readCasebook reads the leads by city and status and the feedback.
func (s *State) readCasebook(ctx context.Context) ([]prometheus.Metric, error) {
	var out []prometheus.Metric
	add := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, t, v, labels...))
	}
	db := s.cb.DB
	// Leads by city and status; every status of a city that has leads, zeros included.
	leads := map[string]map[string]int64{}
	var cities []string
	err := eachRow(ctx, db, "SELECT city_code, status, count(*) FROM casebook.leads GROUP BY ALL ORDER BY ALL", func(r *sql.Rows) error {
		var city, status string
		var n int64
		if err := r.Scan(&city, &status, &n); err != nil {
			return err
		}
		if leads[city] == nil {
			leads[city] = map[string]int64{}
			cities = append(cities, city)
		}
		leads[city][status] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, city := range cities {
		for _, st := range leadStatuses {
			add(leadsDesc, prometheus.GaugeValue, float64(leads[city][st]), city, st)
		}
	}

	// Feedback, as GET /api/v1/metrics shows it to the province.
	byCity, err := s.cb.Metrics(ctx, province, "city")
	if err != nil {
		return nil, err
	}
	for _, m := range byCity {
		add(overdueDesc, prometheus.GaugeValue, float64(m.Overdue), m.City)
		add(recoveredDesc, prometheus.CounterValue, m.Recovered, m.City)
	}
	byModel, err := s.cb.Metrics(ctx, province, "model")
	if err != nil {
		return nil, err
	}
	for _, m := range byModel {
		v := shortVersion(m.ModelVersion)
		add(cluesIssuedDesc, prometheus.CounterValue, float64(m.Issued), m.Model, v)
		add(cluesClosedDesc, prometheus.CounterValue, float64(m.Confirmed), m.Model, v, casebook.OutcomeConfirmed)
		add(cluesClosedDesc, prometheus.CounterValue, float64(m.Dismissed), m.Model, v, casebook.OutcomeDismissed)
		add(cluesClosedDesc, prometheus.CounterValue, float64(m.Referred), m.Model, v, casebook.OutcomeReferred)
	}
	return out, nil
}

// shortVersion is a model version as the log shows it (models/runner.go).
func shortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

func eachRow(ctx context.Context, db *sql.DB, query string, fn func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
