// This file checks the audit log: every download and every view of unmasked
// personal data leaves exactly one line saying who, what and how many rows,
// read back over the API by the province; a modeler's masked views leave none,
// but every draft SQL anyone runs is kept with its text.
package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"

	"collider/casebook"
	"collider/models"
)

// auditAfter returns the audit lines after id, oldest first, as the province reads them.
func (e *testEnv) auditAfter(t *testing.T, id int64) []casebook.AuditEntry {
	t.Helper()
	var p struct {
		Items []casebook.AuditEntry `json:"items"`
	}
	e.getJSON(t, asProvince, "/api/v1/audit?limit=1000", &p)
	var out []casebook.AuditEntry
	for i := len(p.Items) - 1; i >= 0; i-- {
		if p.Items[i].ID > id {
			out = append(out, p.Items[i])
		}
	}
	return out
}

// lastAuditID is the newest line, read over the API: a view's line is
// committed within 100 ms, and reading the log commits what is queued.
func (e *testEnv) lastAuditID(t *testing.T) int64 {
	t.Helper()
	var p struct {
		Items []casebook.AuditEntry `json:"items"`
	}
	e.getJSON(t, asProvince, "/api/v1/audit?limit=1", &p)
	if len(p.Items) == 0 {
		return 0
	}
	return p.Items[0].ID
}

func TestAudit_DownloadsAndUnmaskedViewsAreLogged(t *testing.T) {
	e := getEnv(t)
	var all, own, rejects int64
	e.scalar(t, &all, "SELECT count(*) FROM casebook.clues")
	e.scalar(t, &own, "SELECT count(*) FROM casebook.leads WHERE city_code = ?", ownCity)
	e.scalar(t, &rejects, "SELECT count(*) FROM feeds.rejects WHERE delivery_id = ?", e.delivery)
	var batchClues, ownBatchClues int64
	e.scalar(t, &batchClues, "SELECT count(*) FROM casebook.clues WHERE batch_id = ?", e.batch)
	e.scalar(t, &ownBatchClues, "SELECT count(*) FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id WHERE c.batch_id = ? AND l.city_code = ?", e.batch, ownCity)
	lead := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	month := time.Now().Format("2006-01")
	var reportCities int64
	e.scalar(t, &reportCities, `SELECT count(DISTINCT city_code) FROM casebook.lead_events WHERE strftime(event_at, '%Y-%m') = ?`, month)
	if rejects == 0 || own == 0 {
		t.Fatalf("%d rejects, %d own leads: nothing to audit", rejects, own)
	}

	const none = -1
	for _, tc := range []struct {
		name, as, path string
		action, object string // the line it must leave; action "" for none
		rows           int64
	}{
		{"province downloads every clue as CSV", asProvince, "/api/v1/clues/export?format=csv", "download", "clues.csv?", all},
		{"city downloads its clues as XLSX", asCityOwn, "/api/v1/clues/export?format=xlsx", "download", "clues.xlsx?", own},
		{"admin downloads a batch as Parquet", asAdmin, fmt.Sprintf("/api/v1/batches/%d/export?format=parquet", e.batch), "download", fmt.Sprintf("clues.parquet?batch=%d", e.batch), batchClues},
		{"city downloads a batch as CSV", asCityOwn, fmt.Sprintf("/api/v1/batches/%d/export", e.batch), "download", fmt.Sprintf("clues.csv?batch=%d", e.batch), ownBatchClues},
		{"a modeler's download, masked, is still a download", asModeler, "/api/v1/clues/export?format=csv&severity=high", "download", "clues.csv?severity=high", none},
		{"province downloads a delivery's rejects", asProvince, fmt.Sprintf("/api/v1/deliveries/%d/rejects.csv", e.delivery), "download", fmt.Sprintf("delivery %d rejects.csv", e.delivery), rejects},
		{"admin downloads a delivery's rejects", asAdmin, fmt.Sprintf("/api/v1/deliveries/%d/rejects.csv", e.delivery), "download", fmt.Sprintf("delivery %d rejects.csv", e.delivery), rejects},
		{"province downloads the monthly report", asProvince, "/api/v1/reports/monthly?month=" + month, "download", "report.xlsx?month=" + month, reportCities},
		{"city downloads the monthly report", asCityOwn, "/api/v1/reports/monthly", "download", "report.xlsx?month=" + month, 1},
		{"province lists clues", asProvince, "/api/v1/clues?limit=1000", "view", "clues?limit=1000", all},
		{"city lists its clues", asCityOwn, "/api/v1/clues?limit=5", "view", "clues?limit=5", min(own, 5)},
		{"admin lists clues", asAdmin, "/api/v1/clues?model=deceased_claims", "view", "clues?model=deceased_claims", none},
		{"province reads a clue", asProvince, fmt.Sprintf("/api/v1/clues/%d", lead), "view", fmt.Sprintf("clue %d", lead), 1},
		{"city reads its clue", asCityOwn, fmt.Sprintf("/api/v1/clues/%d", lead), "view", fmt.Sprintf("clue %d", lead), 1},
		{"admin reads a clue", asAdmin, fmt.Sprintf("/api/v1/clues/%d", lead), "view", fmt.Sprintf("clue %d", lead), 1},
		{"province reads a lead", asProvince, fmt.Sprintf("/api/v1/leads/%d", lead), "view", fmt.Sprintf("lead %d", lead), 1},
		{"city reads its lead", asCityOwn, fmt.Sprintf("/api/v1/leads/%d", lead), "view", fmt.Sprintf("lead %d", lead), 1},
		{"a modeler lists clues masked", asModeler, "/api/v1/clues", "", "", 0},
		{"a modeler reads a clue masked", asModeler, fmt.Sprintf("/api/v1/clues/%d", lead), "", "", 0},
		{"another city is refused a clue", asCityOther, fmt.Sprintf("/api/v1/clues/%d", lead), "", "", 0},
		{"the monthly report as JSON has no personal data", asCityOwn, "/api/v1/reports/monthly?format=json", "", "", 0},
		{"counts have no personal data", asCityOwn, "/api/v1/metrics?by=city", "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.lastAuditID(t)
			r := e.do(t, tc.as, http.MethodGet, tc.path, "")
			if tc.action != "" && r.status != http.StatusOK {
				t.Fatalf("%s", r)
			}
			lines := e.auditAfter(t, before)
			if tc.action == "" {
				if len(lines) != 0 {
					t.Fatalf("audit lines %+v, want none", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("%d audit lines %+v, want one", len(lines), lines)
			}
			a, u := lines[0], e.users[tc.as]
			if a.UserID != u.ID || a.UserName != u.Name || a.Role != string(u.Role) {
				t.Errorf("audit line by %d %s %s, want %d %s %s", a.UserID, a.UserName, a.Role, u.ID, u.Name, u.Role)
			}
			if a.Action != tc.action || a.Object != tc.object {
				t.Errorf("audit line %s %q, want %s %q", a.Action, a.Object, tc.action, tc.object)
			}
			if tc.rows != none && a.Rows != tc.rows {
				t.Errorf("audit line counts %d rows, want %d", a.Rows, tc.rows)
			}
			if tc.rows == none && a.Rows <= 0 {
				t.Errorf("audit line counts %d rows", a.Rows)
			}
			if strings.TrimSpace(a.At.String()) == "" || a.At.IsZero() {
				t.Error("audit line without a time")
			}
		})
	}
}

// failingWriter breaks off after a number of bytes, like a client that
// disconnects in the middle of a download.
type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errors.New("connection reset by peer")
	}
	w.left -= len(p)
	return len(p), nil
}

// A download that breaks off has still handed out rows: it is audited with
// the rows written and why it stopped.
func TestAudit_InterruptedDownloadsAreLogged(t *testing.T) {
	e := getEnv(t)
	for _, format := range casebook.Formats {
		t.Run(format, func(t *testing.T) {
			before := e.lastAuditID(t)
			u := e.users[asCityOwn]
			n, err := e.cb.Export(context.Background(), u, casebook.ClueFilter{}, format, &failingWriter{left: 100})
			if err == nil {
				t.Fatal("the export did not notice the broken connection")
			}
			lines := e.auditAfter(t, before)
			if len(lines) != 1 {
				t.Fatalf("%d audit lines %+v, want one", len(lines), lines)
			}
			a := lines[0]
			if a.Action != "download" || a.UserID != u.ID || a.Rows != n || a.Object != "clues."+format+"?" || !strings.Contains(a.Detail, "interrupted") {
				t.Errorf("audit line %+v after %d rows", a, n)
			}
		})
	}
}

// A draft is the caller's own SQL over every feed: whoever runs one, and
// whatever it shows, the audit log keeps its text.
func TestAudit_DraftPreviewsAreLoggedWithTheirSQL(t *testing.T) {
	e := getEnv(t)
	live, err := fs.ReadFile(models.Embedded(), "deceased_claims.sql")
	if err != nil {
		t.Fatal(err)
	}
	draft := strings.Replace(string(live), "> CAST($grace_days AS INTEGER)", "> CAST($grace_days AS INTEGER) + 7", 1)
	if draft == string(live) {
		t.Fatal("the draft changes nothing")
	}
	body, _ := json.Marshal(map[string]string{"sql": draft})
	for _, tc := range []struct{ as, action string }{{asModeler, "draft"}, {asProvince, "view"}} {
		t.Run(tc.as, func(t *testing.T) {
			before := e.lastAuditID(t)
			r := e.do(t, tc.as, http.MethodPost, "/api/v1/models/deceased_claims/preview", string(body))
			if r.status != http.StatusOK {
				t.Fatalf("%s", r)
			}
			lines := e.auditAfter(t, before)
			if len(lines) != 1 {
				t.Fatalf("%d audit lines %+v, want one", len(lines), lines)
			}
			l := lines[0]
			if l.Action != tc.action || l.Object != "preview deceased_claims" || l.UserID != e.users[tc.as].ID ||
				!strings.HasPrefix(l.Detail, "draft sha256 ") || !strings.HasSuffix(l.Detail, draft) {
				t.Errorf("audit line %+v, want a %s with the draft's text", l, tc.action)
			}
		})
	}
}

// A preview shows persons (its top clues and the samples of what a draft
// adds or drops): the province's unmasked preview is a view to audit, the
// modeler's masked one is not.
func TestAudit_PreviewsShowingPersonsAreLogged(t *testing.T) {
	e := getEnv(t)
	for _, tc := range []struct {
		as      string
		audited bool
	}{{asProvince, true}, {asModeler, false}} {
		t.Run(tc.as, func(t *testing.T) {
			before := e.lastAuditID(t)
			// A longer grace period drops live flags: the preview samples them.
			r := e.do(t, tc.as, http.MethodPost, "/api/v1/models/deceased_claims/preview", `{"params":{"grace_days":"30"}}`)
			if r.status != http.StatusOK {
				t.Fatalf("%s", r)
			}
			var p struct {
				TopClues []json.RawMessage
				Diff     *struct{ AddedSample, RemovedSample []json.RawMessage }
			}
			if err := json.Unmarshal(r.body, &p); err != nil {
				t.Fatal(err)
			}
			shown := len(p.TopClues)
			if p.Diff != nil {
				shown += len(p.Diff.AddedSample) + len(p.Diff.RemovedSample)
			}
			if shown == 0 {
				t.Fatal("the preview shows nobody: nothing to audit")
			}
			lines := e.auditAfter(t, before)
			switch {
			case !tc.audited && len(lines) != 0:
				t.Errorf("audit lines %+v for a masked preview", lines)
			case tc.audited && len(lines) != 1:
				t.Fatalf("%d audit lines %+v, want one", len(lines), lines)
			case tc.audited && (lines[0].Action != "view" || lines[0].Object != "preview deceased_claims" || lines[0].Rows != int64(shown) || lines[0].UserID != e.users[tc.as].ID):
				t.Errorf("audit line %+v, want a view of %d persons", lines[0], shown)
			}
		})
	}
}
