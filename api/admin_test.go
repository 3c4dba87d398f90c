package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"collider/store"
)

// The check answers how the store stands: every invariant, each holding.
func TestAdmin_CheckReportsEveryInvariant(t *testing.T) {
	e := getEnv(t)
	var r struct {
		OK         bool `json:"ok"`
		Invariants []struct {
			Name       string   `json:"name"`
			Violations int64    `json:"violations"`
			Examples   []string `json:"examples"`
		} `json:"invariants"`
	}
	e.getJSON(t, asAdmin, "/api/v1/check", &r)
	if !r.OK || len(r.Invariants) != 5 {
		t.Fatalf("check: %+v", r)
	}
	for _, inv := range r.Invariants {
		if inv.Violations != 0 || inv.Examples == nil {
			t.Errorf("%s: %d violations %v", inv.Name, inv.Violations, inv.Examples)
		}
	}
}

// A backup through the API is a whole backup file (every file checked
// against its manifest), counts what the store holds, is kept in the
// backup history and audited as a download; a second one while the first
// is taken is refused with 409, not queued behind it.
func TestAdmin_BackupStreamsAVerifiedFileAndIsRecorded(t *testing.T) {
	e := getEnv(t)
	var leads, events int64
	e.scalar(t, &leads, "SELECT count(*) FROM casebook.leads")
	e.scalar(t, &events, "SELECT count(*) FROM casebook.lead_events")
	r := e.do(t, asAdmin, http.MethodPost, "/api/v1/backups", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-tar" ||
		!strings.Contains(r.header.Get("Content-Disposition"), "collider-backup-") {
		t.Fatalf("backup: %d %v", r.status, r.header)
	}
	m, err := store.VerifyBackup(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows["casebook.leads"] != leads || m.Rows["casebook.lead_events"] < events || m.Schema != store.Known() {
		t.Fatalf("manifest: leads %d (store %d), events %d (store %d), schema %+v", m.Rows["casebook.leads"], leads, m.Rows["casebook.lead_events"], events, m.Schema)
	}
	var history struct {
		Items []struct {
			Trigger, Status, SHA256, StartedBy string
			Bytes                              int64
		} `json:"items"`
	}
	e.getJSON(t, asAdmin, "/api/v1/backups?limit=1", &history)
	if len(history.Items) != 1 || history.Items[0].Trigger != "api" || history.Items[0].Status != "succeeded" || history.Items[0].Bytes != int64(len(r.body)) {
		t.Fatalf("history: %+v (downloaded %d bytes)", history, len(r.body))
	}
	var audited int
	e.scalar(t, &audited, "SELECT count(*) FROM casebook.audit WHERE action = 'download' AND object = 'backup' AND role = 'admin' AND detail LIKE '%sha256 '||?", history.Items[0].SHA256)
	if audited != 1 {
		t.Fatalf("the backup download is audited %d times", audited)
	}

	snap, err := e.store.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r = e.do(t, asAdmin, http.MethodPost, "/api/v1/backups", "")
	snap.Close()
	var body apiError
	json.Unmarshal(r.body, &body)
	if r.status != http.StatusConflict || !strings.Contains(body.Error.Message, "already being taken") {
		t.Fatalf("a second backup at once: %s", r)
	}
}
