package metrics_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"collider/jobs"
	"collider/store"
)

func stampOf(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// After a run in which one delivery failed and another had bad rows,
// /metrics tells the operator all of it: the run by trigger and status, each
// step, the deliveries by feed and status, the rows read and rejected by
// reason, what each model flagged, issued and left suppressed, when the run
// ended and the batch was published, when each feed last delivered, and the
// leads each city now holds.
func TestMetrics_AfterARunWithAFailingDelivery(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	before := e.scrape(t)
	before.check(t, []want{
		{name: "collider_runs_total", labels: []string{"trigger", "cli", "status", "partial"}, value: 0},
		{name: "collider_deliveries_total", labels: []string{"feed", "locations", "status", "failed"}, value: 0},
		{name: "collider_run_in_progress", value: 0},
		{name: "collider_last_batch_timestamp_seconds", absent: true},
	})
	// Before any run, the last successful run is when the store was made:
	// a store that never runs is noticed 26 hours later.
	if v, ok := before.series("collider_last_successful_run_timestamp_seconds"); !ok || v <= 0 || v > float64(time.Now().Unix()+1) {
		t.Fatalf("before any run: collider_last_successful_run_timestamp_seconds = %v, %v", v, ok)
	}

	out := e.firstRun(t)
	var version string
	for _, m := range out.Models {
		if m.Model == "deceased_claims" {
			version = m.Version[:12]
		}
	}
	var run jobs.RunRecord
	e.getJSON(t, "province", fmt.Sprintf("/api/v1/runs/%d", out.RunID), &run)
	var batch struct {
		PublishedAt time.Time `json:"published_at"`
	}
	e.getJSON(t, "province", fmt.Sprintf("/api/v1/batches/%d", out.BatchID), &batch)
	var ledger struct {
		Items []jobs.DeliverySummary `json:"items"`
	}
	e.getJSON(t, "province", "/api/v1/deliveries", &ledger)
	arrived := map[string]float64{}
	for _, d := range ledger.Items {
		arrived[d.Feed] = stampOf(d.StartedAt)
	}

	s := e.scrape(t)
	s.check(t, []want{
		// runs by trigger and status
		{name: "collider_runs_total", labels: []string{"trigger", "cli", "status", "partial"}, value: 1},
		{name: "collider_runs_total", labels: []string{"trigger", "cli", "status", "failed"}, value: 0},
		{name: "collider_runs_total", labels: []string{"trigger", "schedule", "status", "succeeded"}, value: 0},
		{name: "collider_last_run_timestamp_seconds", labels: []string{"status", "partial"}, value: stampOf(*run.FinishedAt)},
		{name: "collider_last_run_timestamp_seconds", labels: []string{"status", "failed"}, absent: true},
		{name: "collider_last_successful_run_timestamp_seconds", value: stampOf(*run.FinishedAt)},
		{name: "collider_last_batch_timestamp_seconds", value: stampOf(batch.PublishedAt)},
		{name: "collider_last_batch_clues", value: 2},
		{name: "collider_run_in_progress", value: 0},
		{name: "collider_run_progress_percent", labels: []string{"step", "load"}, absent: true},
		// steps: how many, how they ended, their rows
		{name: "collider_run_step_seconds", labels: []string{"step", "discover", "status", "succeeded"}, value: 1},
		{name: "collider_run_step_seconds", labels: []string{"step", "load", "status", "succeeded"}, value: 3},
		{name: "collider_run_step_seconds", labels: []string{"step", "load", "status", "failed"}, value: 1},
		{name: "collider_run_step_seconds", labels: []string{"step", "model", "status", "succeeded"}, value: 5},
		{name: "collider_run_step_seconds", labels: []string{"step", "publish", "status", "succeeded"}, value: 1},
		{name: "collider_run_step_seconds", labels: []string{"step", "route", "status", "succeeded"}, value: 1},
		{name: "collider_run_step_rows_total", labels: []string{"step", "discover"}, value: 4},
		{name: "collider_run_step_rows_total", labels: []string{"step", "load"}, value: 2 + 4 + 7},
		{name: "collider_run_step_rows_total", labels: []string{"step", "model"}, value: 4},
		{name: "collider_run_step_rows_total", labels: []string{"step", "publish"}, value: 2},
		{name: "collider_run_step_rows_total", labels: []string{"step", "route"}, value: 2},
		// deliveries by feed and status, rows and rejects
		{name: "collider_deliveries_total", labels: []string{"feed", "locations", "status", "failed"}, value: 1},
		{name: "collider_deliveries_total", labels: []string{"feed", "locations", "status", "loaded"}, value: 0},
		{name: "collider_deliveries_total", labels: []string{"feed", "settlements", "status", "loaded"}, value: 1},
		{name: "collider_deliveries_total", labels: []string{"feed", "institutions", "status", "loaded"}, value: 1},
		{name: "collider_deliveries_total", labels: []string{"feed", "civil_status", "status", "loaded"}, value: 1},
		{name: "collider_deliveries_total", labels: []string{"feed", "residents", "status", "failed"}, value: 0},
		{name: "collider_delivery_rows_total", labels: []string{"feed", "settlements"}, value: 10},
		{name: "collider_delivery_rows_total", labels: []string{"feed", "civil_status"}, value: 4},
		{name: "collider_delivery_rows_total", labels: []string{"feed", "locations"}, value: 0},
		{name: "collider_rejected_rows_total", labels: []string{"feed", "settlements", "reason", "invalid_person_id"}, value: 2},
		{name: "collider_rejected_rows_total", labels: []string{"feed", "settlements", "reason", "bad_enum"}, value: 2},
		{name: "collider_rejected_rows_total", labels: []string{"feed", "civil_status", "reason", "missing_value"}, absent: true},
		{name: "collider_feed_reject_ratio", labels: []string{"feed", "settlements"}, value: 0.3},
		{name: "collider_feed_reject_ratio", labels: []string{"feed", "civil_status"}, value: 0},
		{name: "collider_feed_reject_ratio", labels: []string{"feed", "locations"}, absent: true},
		{name: "collider_feed_last_delivery_timestamp_seconds", labels: []string{"feed", "locations"}, value: arrived["locations"]},
		{name: "collider_feed_last_delivery_timestamp_seconds", labels: []string{"feed", "settlements"}, value: arrived["settlements"]},
		{name: "collider_feed_last_delivery_timestamp_seconds", labels: []string{"feed", "residents"}, absent: true},
		// the models: flagged, issued, suppressed
		{name: "collider_model_flagged_settlements_total", labels: []string{"model", "deceased_claims"}, value: 4},
		{name: "collider_model_issued_settlements_total", labels: []string{"model", "deceased_claims"}, value: 3},
		{name: "collider_model_suppressed_settlements_total", labels: []string{"model", "deceased_claims"}, value: 1},
		{name: "collider_model_flagged_settlements_total", labels: []string{"model", "unknown_identity"}, value: 0},
		// the casebook
		{name: "collider_leads", labels: []string{"city", lanzhou, "status", "new"}, value: 1},
		{name: "collider_leads", labels: []string{"city", lanzhou, "status", "closed"}, value: 0},
		{name: "collider_leads", labels: []string{"city", baiyin, "status", "new"}, value: 1},
		{name: "collider_leads_overdue", labels: []string{"city", lanzhou}, value: 0},
		{name: "collider_clues_issued_total", labels: []string{"model", "deceased_claims", "version", version}, value: 2},
		{name: "collider_clues_closed_total", labels: []string{"model", "deceased_claims", "version", version, "outcome", "confirmed"}, value: 0},
		{name: "collider_recovered_yuan_total", labels: []string{"city", lanzhou}, value: 0},
		{name: "collider_state_read_errors_total", value: 0},
	})
	if len(version) != 12 {
		t.Fatalf("deceased_claims ran without a version: %+v", out.Models)
	}
	// The store keeps China Standard Time wall clocks; the series are instants.
	if v, _ := s.series("collider_last_run_timestamp_seconds", "status", "partial"); v < stampOf(start.Add(-time.Second)) || v > stampOf(time.Now()) {
		t.Fatalf("the run ended at %v by /metrics, outside the test (%v to %v)", v, stampOf(start), stampOf(time.Now()))
	}
}

// Lead actions show on the next scrape: leads move between statuses and
// cities, a confirmed closure counts for its model version with its
// recovered amount, and a lead past its due date counts as overdue for the
// city that holds it. No series names a person, an ID number, an
// institution or a lead.
func TestMetrics_AfterLeadActions(t *testing.T) {
	e := newEnv(t)
	out := e.firstRun(t)
	version := ""
	for _, m := range out.Models {
		if m.Model == "deceased_claims" {
			version = m.Version[:12]
		}
	}
	leadOf := func(as string) int64 {
		var inbox struct {
			Items []struct {
				ID int64 `json:"lead_id"`
			} `json:"items"`
		}
		e.getJSON(t, as, "/api/v1/leads", &inbox)
		if len(inbox.Items) != 1 {
			t.Fatalf("%s's inbox: %+v", as, inbox)
		}
		return inbox.Items[0].ID
	}
	act := func(as string, lead int64, body string) {
		t.Helper()
		if status, b := e.do(t, as, http.MethodPost, fmt.Sprintf("/api/v1/leads/%d/events", lead), body); status != http.StatusCreated {
			t.Fatalf("lead %d %s: %d %s", lead, body, status, b)
		}
	}
	lz, by := leadOf("city"), leadOf("baiyin")
	act("city", lz, `{"action":"accept"}`)
	act("city", lz, `{"action":"investigate"}`)
	act("city", lz, `{"action":"close","outcome":"confirmed","recovered_amount":1200.5,"note":"冒用已追回"}`)
	act("baiyin", by, `{"action":"return","note":"不属本市"}`)

	s := e.scrape(t)
	s.check(t, []want{
		{name: "collider_leads", labels: []string{"city", lanzhou, "status", "new"}, value: 0},
		{name: "collider_leads", labels: []string{"city", lanzhou, "status", "closed"}, value: 1},
		{name: "collider_leads", labels: []string{"city", provinceCd, "status", "returned"}, value: 1},
		{name: "collider_leads", labels: []string{"city", baiyin, "status", "new"}, absent: true},
		{name: "collider_clues_issued_total", labels: []string{"model", "deceased_claims", "version", version}, value: 2},
		{name: "collider_clues_closed_total", labels: []string{"model", "deceased_claims", "version", version, "outcome", "confirmed"}, value: 1},
		{name: "collider_clues_closed_total", labels: []string{"model", "deceased_claims", "version", version, "outcome", "dismissed"}, value: 0},
		{name: "collider_recovered_yuan_total", labels: []string{"city", lanzhou}, value: 1200.5},
		{name: "collider_leads_overdue", labels: []string{"city", lanzhou}, value: 0},
		{name: "collider_leads_overdue", labels: []string{"city", provinceCd}, value: 0},
	})

	// A month on, the returned lead is past its due date (30 days for a
	// high-severity clue); the closed one never is.
	e.clockSkew.Store(int64(31 * 24 * time.Hour))
	later := e.scrape(t)
	later.check(t, []want{
		{name: "collider_leads_overdue", labels: []string{"city", provinceCd}, value: 1},
		{name: "collider_leads_overdue", labels: []string{"city", lanzhou}, value: 0},
	})

	// Privacy and cardinality: no label is a person, an ID or a lead.
	secrets := []string{deadA, deadB, deadHeld, alive, badID, hospital, pharmacy, "S1", "S3", "某某", "城关医院"}
	for name, f := range later.fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "person", "person_id", "lead", "lead_id", "clue", "clue_id", "settlement_id", "institution_id", "run", "delivery", "batch", "id":
					t.Errorf("%s carries the label %s", name, l.GetName())
				}
				for _, s := range secrets {
					if l.GetValue() == s {
						t.Errorf("%s{%s=%q} names a person, an ID or an institution", name, l.GetName(), s)
					}
				}
				if regexp.MustCompile(`^\d{15}(\d{2}[\dX])?$`).MatchString(l.GetValue()) {
					t.Errorf("%s{%s=%q} looks like an ID number", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// While a run is loading a delivery, /metrics says a run is in progress and
// how far the load is, as GET /api/v1/runs/{id} does; when it ends, the run
// counts under its trigger and status.
func TestMetrics_WhileARunIsInProgress(t *testing.T) {
	e := newEnv(t)
	e.firstRun(t)
	// Two files of 40 rows: 80 rows read, then a quarter more for the key
	// check, so the first file done is 40 of 100 units.
	rows := func(from int) string {
		return fmt.Sprintf(`SELECT 'N' || i AS settlement_id, '%s' AS person_id, 'pharmacy' AS visit_type, '%s' AS institution_id,
			TIMESTAMP '2025-04-01 09:00:00' + to_minutes(i) AS visit_start, TIMESTAMP '2025-04-01 09:00:00' + to_minutes(i) AS settled_at,
			10.0::DOUBLE AS total_amount, 5.0::DOUBLE AS fund_amount FROM range(%d, %d) t(i)`, alive, pharmacy, from, from+40)
	}
	e.delivery(t, "settlements", "0002", rows(0), rows(40))
	e.gate.arm("settlements/0002")
	status, body := e.do(t, "province", http.MethodPost, "/api/v1/runs", "")
	if status != http.StatusAccepted {
		t.Fatalf("POST /api/v1/runs: %d %s", status, body)
	}
	select {
	case <-e.gate.reached:
	case status := <-e.gate.finished:
		t.Fatalf("the run finished %s without loading settlements/0002", status)
	}
	during := e.scrape(t)
	var runs struct {
		Items []jobs.RunRecord `json:"items"`
	}
	e.getJSON(t, "province", "/api/v1/runs", &runs)
	close(e.gate.release)
	during.check(t, []want{
		{name: "collider_run_in_progress", value: 1},
		{name: "collider_run_progress_percent", labels: []string{"step", "load"}, value: 40},
		{name: "collider_runs_total", labels: []string{"trigger", "api", "status", "succeeded"}, value: 0},
		{name: "collider_runs_total", labels: []string{"trigger", "cli", "status", "partial"}, value: 1},
	})
	if p := runs.Items[0].Progress; runs.Items[0].Status != jobs.RunRunning || p == nil || p.Percent == nil || *p.Percent != 40 {
		t.Fatalf("the API shows the running run as %+v", runs.Items[0])
	}
	if status := <-e.gate.finished; status != jobs.RunSucceeded {
		t.Fatalf("the second run ended %s", status)
	}
	after := e.scrape(t)
	after.check(t, []want{
		{name: "collider_run_in_progress", value: 0},
		{name: "collider_run_progress_percent", labels: []string{"step", "load"}, absent: true},
		{name: "collider_runs_total", labels: []string{"trigger", "api", "status", "succeeded"}, value: 1},
		{name: "collider_deliveries_total", labels: []string{"feed", "settlements", "status", "loaded"}, value: 2},
		// the deliveries seen before were skipped, not counted again
		{name: "collider_deliveries_total", labels: []string{"feed", "institutions", "status", "loaded"}, value: 1},
		{name: "collider_deliveries_total", labels: []string{"feed", "locations", "status", "failed"}, value: 1},
		{name: "collider_delivery_rows_total", labels: []string{"feed", "settlements"}, value: 90},
		{name: "collider_feed_reject_ratio", labels: []string{"feed", "settlements"}, value: 0},
		{name: "collider_last_batch_clues", value: 0},
	})
}

// The structured log and the series name the same things the same way:
// every label value of the pipeline's series that a run set is in the log
// under the same key (the log's run, delivery and batch are identifiers,
// which no series carries).
func TestMetrics_LabelsAgreeWithTheLog(t *testing.T) {
	e := newEnv(t)
	e.firstRun(t)
	s := e.scrape(t)
	logged := map[string]map[string]bool{}
	for _, r := range e.log.records(t) {
		for k, v := range r {
			if logged[k] == nil {
				logged[k] = map[string]bool{}
			}
			logged[k][fmt.Sprint(v)] = true
		}
	}
	for _, key := range []string{"run", "batch", "delivery", "model", "feed", "step"} {
		if len(logged[key]) == 0 {
			t.Errorf("the log has no %s field", key)
		}
	}
	checked := 0
	for name, f := range s.fams {
		if !strings.HasPrefix(name, "collider_") || strings.HasPrefix(name, "collider_http_") {
			continue
		}
		for _, m := range f.GetMetric() {
			v, _ := s.series(name, labelPairs(m)...)
			if v == 0 {
				continue // pre-set, nothing happened under it
			}
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() == "city", l.GetName() == "outcome", l.GetName() == "reason",
					name == "collider_leads" && l.GetName() == "status":
					continue // the casebook's and the rejects', not the run log's
				case l.GetName() == "tag", name == "collider_c_heap_bytes":
					continue // the process's memory, not the run's
				}
				if !logged[l.GetName()][l.GetValue()] {
					t.Errorf("%s has %s=%q, which the log never says", name, l.GetName(), l.GetValue())
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d labels checked against the log", checked)
	}
	t.Logf("%d label values of the pipeline's series found in the log under the same keys", checked)
}

func labelPairs(m *dto.Metric) []string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName(), l.GetValue())
	}
	return out
}

// A scrape whose read of the store fails still answers 200: the state
// series keep their last good values and the failure is counted.
func TestMetrics_AStoreReadThatFailsDoesNotFailTheScrape(t *testing.T) {
	e := newEnv(t)
	e.firstRun(t)
	e.scrape(t).check(t, []want{
		{name: "collider_leads", labels: []string{"city", lanzhou, "status", "new"}, value: 1},
		{name: "collider_state_read_errors_total", value: 0},
	})
	if _, err := e.store.DB.Exec("ALTER TABLE casebook.leads RENAME TO leads_away"); err != nil {
		t.Fatal(err)
	}
	failed := e.scrape(t)
	if _, err := e.store.DB.Exec("ALTER TABLE casebook.leads_away RENAME TO leads"); err != nil {
		t.Fatal(err)
	}
	failed.check(t, []want{
		{name: "collider_leads", labels: []string{"city", lanzhou, "status", "new"}, value: 1},
		{name: "collider_last_batch_clues", value: 2},
		{name: "collider_runs_total", labels: []string{"trigger", "cli", "status", "partial"}, value: 1},
		{name: "collider_state_read_errors_total", value: 1},
	})
}

// DuckDB's memory is served by tag, as duckdb_memory() reports it: the
// operator sees what of the server's resident memory is the engine's and
// what holds it (the store's blocks, hash tables, indexes).
func TestMetrics_DuckDBMemoryByTag(t *testing.T) {
	e := newEnv(t)
	e.firstRun(t)
	tags := map[string]bool{}
	rows, err := e.store.DB.Query("SELECT tag FROM duckdb_memory()")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tag string
		if err := rows.Scan(&tag); err != nil {
			t.Fatal(err)
		}
		tags[tag] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	s := e.scrape(t)
	for tag := range tags {
		if _, ok := s.series("collider_duckdb_memory_bytes", "tag", tag); !ok {
			t.Errorf("no collider_duckdb_memory_bytes{tag=%q}", tag)
		}
		if _, ok := s.series("collider_duckdb_temporary_bytes", "tag", tag); !ok {
			t.Errorf("no collider_duckdb_temporary_bytes{tag=%q}", tag)
		}
	}
	// After a run the store's tables have blocks in the buffer pool, and
	// the engine holds less than the process.
	base, ok := s.series("collider_duckdb_memory_bytes", "tag", "BASE_TABLE")
	if !ok || base <= 0 {
		t.Fatalf("collider_duckdb_memory_bytes{tag=BASE_TABLE} = %v, %v after a run", base, ok)
	}
	var total float64
	for _, m := range s.fams["collider_duckdb_memory_bytes"].GetMetric() {
		total += m.GetGauge().GetValue()
	}
	if rss, ok := s.series("process_resident_memory_bytes"); !ok || total >= rss {
		t.Fatalf("DuckDB holds %.0f bytes of a resident %.0f (%v)", total, rss, ok)
	}
	// The C allocator DuckDB allocates with: something in use after a run.
	if _, ok := store.ReadCHeap(); ok {
		for _, state := range []string{"in_use", "free", "mapped"} {
			if _, ok := s.series("collider_c_heap_bytes", "state", state); !ok {
				t.Errorf("no collider_c_heap_bytes{state=%q}", state)
			}
		}
		if v, _ := s.series("collider_c_heap_bytes", "state", "in_use"); v <= 0 {
			t.Errorf("collider_c_heap_bytes{state=in_use} = %v after a run", v)
		}
	}
}
