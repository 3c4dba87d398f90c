package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

type draftAnswer struct {
	ID          int64  `json:"draft_id"`
	Model       string `json:"model"`
	Version     string `json:"version"`
	BaseVersion string `json:"base_version"`
	Status      string `json:"status"`
	TestsPassed bool   `json:"tests_passed"`
	Decision    string `json:"decision"`
	Preview     *struct {
		Flagged int64
		Tests   []struct {
			Passed bool `json:"passed"`
		}
		Diff *struct{ Added, Removed int64 }
	} `json:"preview"`
}

func decodeDraft(t *testing.T, r response) draftAnswer {
	t.Helper()
	var d draftAnswer
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	return d
}

// The batch's version of a model.
func (e *testEnv) batchVersion(t *testing.T, batch int64, model string) string {
	t.Helper()
	r := e.do(t, asProvince, http.MethodGet, fmt.Sprintf("/api/v1/batches/%d", batch), "")
	var b struct {
		Models []struct{ Model, Version string } `json:"models"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	for _, m := range b.Models {
		if m.Model == model {
			return m.Version
		}
	}
	t.Fatalf("batch %d has no %s: %s", batch, model, r)
	return ""
}

// runNow starts a run over the API, waits for it and returns its batch.
func (e *testEnv) runNow(t *testing.T) int64 {
	t.Helper()
	r := e.do(t, asProvince, http.MethodPost, "/api/v1/runs", "")
	if r.status != http.StatusAccepted {
		t.Fatal(r)
	}
	var run struct {
		ID int64 `json:"run_id"`
	}
	json.Unmarshal(r.body, &run)
	e.waitForRuns(t)
	rec, err := e.pipeline.Get(t.Context(), run.ID)
	if err != nil || rec.BatchID == nil {
		t.Fatalf("run %d: %+v %v", run.ID, rec, err)
	}
	return *rec.BatchID
}

// The lifecycle end to end through the API: submit → reject; a draft that
// fails its fixtures cannot be approved; submit → approve → the next run's
// batch uses the new version; a draft submitted against an older live
// version is refused; roll back → the run after uses the old one. Every
// step is in the history and the audit log.
func TestWorkbench_SubmitReviewGoLiveRollBack(t *testing.T) {
	e := getEnv(t)
	defer e.rollbackToShipped(t, "deceased_claims")
	shipped := e.liveVersion(t, "deceased_claims")
	before := e.lastAuditID(t)
	submit := func(body string) response {
		return e.do(t, asModeler, http.MethodPost, "/api/v1/models/deceased_claims/drafts", body)
	}

	// Submit, then reject with a reason.
	r := submit(`{"params":{"grace_days":"7"},"note":"一周内的结算多为补录"}`)
	if r.status != http.StatusCreated {
		t.Fatal(r)
	}
	d := decodeDraft(t, r)
	if d.Status != "pending" || d.BaseVersion != shipped || !d.TestsPassed || d.Preview == nil || len(d.Preview.Tests) == 0 || d.Preview.Diff == nil {
		t.Fatalf("submitted draft %+v", d)
	}
	if r := submit(`{"params":{"grace_days":"7"},"note":"again"}`); r.status != http.StatusConflict {
		t.Errorf("the same version twice: %s", r)
	}
	if r := e.do(t, asProvince, http.MethodPost, fmt.Sprintf("/api/v1/drafts/%d/reject", d.ID), `{}`); r.status != http.StatusBadRequest {
		t.Errorf("a rejection without a reason: %s", r)
	}
	r = e.do(t, asProvince, http.MethodPost, fmt.Sprintf("/api/v1/drafts/%d/reject", d.ID), `{"reason":"补录应由经办机构说明，不宜放宽"}`)
	if got := decodeDraft(t, r); r.status != http.StatusOK || got.Status != "rejected" || got.Decision == "" {
		t.Fatalf("reject: %s", r)
	}
	if r := e.do(t, asProvince, http.MethodPost, fmt.Sprintf("/api/v1/drafts/%d/approve", d.ID), `{}`); r.status != http.StatusConflict {
		t.Errorf("approving a rejected draft: %s", r)
	}

	// A draft whose fixture cases fail is kept, and cannot be approved.
	broken := strings.Replace(draftOf(t, "json_object('death_date', current_date)", "", ""), "WHERE CAST($grace_days AS INTEGER) >= 0", "WHERE CAST($grace_days AS INTEGER) < 0", 1)
	r = submit(fmt.Sprintf(`{"sql":%q,"note":"flags nothing"}`, broken))
	bad := decodeDraft(t, r)
	if r.status != http.StatusCreated || bad.TestsPassed {
		t.Fatalf("a draft failing its fixtures: %s", r)
	}
	if r := e.do(t, asProvince, http.MethodPost, fmt.Sprintf("/api/v1/drafts/%d/approve", bad.ID), `{}`); r.status != http.StatusConflict || !strings.Contains(string(r.body), "fixture") {
		t.Errorf("approving a draft that fails its fixtures: %s", r)
	}

	// Two drafts against the shipped version; the first approved goes live
	// from the next run, the second then answers 409.
	a := decodeDraft(t, submit(`{"params":{"grace_days":"10"},"note":"十日宽限"}`))
	b := decodeDraft(t, submit(`{"params":{"grace_days":"12"},"note":"十二日宽限"}`))
	r = e.do(t, asProvince, http.MethodPost, fmt.Sprintf("/api/v1/drafts/%d/approve", a.ID), `{"note":"同意"}`)
	if got := decodeDraft(t, r); r.status != http.StatusOK || got.Status != "approved" {
		t.Fatalf("approve: %s", r)
	}
	if v := e.liveVersion(t, "deceased_claims"); v != a.Version {
		t.Fatalf("live version %s after approving %s", v[:12], a.Version[:12])
	}
	if r := e.do(t, asProvince, http.MethodPost, fmt.Sprintf("/api/v1/drafts/%d/approve", b.ID), `{}`); r.status != http.StatusConflict || !strings.Contains(string(r.body), "changed since") {
		t.Errorf("approving a draft submitted against an older live version: %s", r)
	}
	if v := e.batchVersion(t, e.runNow(t), "deceased_claims"); v != a.Version {
		t.Errorf("the run after the approval used %s, want %s", v[:12], a.Version[:12])
	}

	// Roll back to the shipped version: the run after uses it.
	r = e.do(t, asProvince, http.MethodPost, "/api/v1/models/deceased_claims/rollback", fmt.Sprintf(`{"version":%q,"note":"回退"}`, shipped[:16]))
	if r.status != http.StatusOK {
		t.Fatal(r)
	}
	if r := e.do(t, asProvince, http.MethodPost, "/api/v1/models/deceased_claims/rollback", fmt.Sprintf(`{"version":%q}`, b.Version)); r.status != http.StatusBadRequest {
		t.Errorf("rolling back to a version never live: %s", r)
	}
	if v := e.batchVersion(t, e.runNow(t), "deceased_claims"); v != shipped {
		t.Errorf("the run after the roll back used %s, want %s", v[:12], shipped[:12])
	}

	// The history, newest first, and the audit log.
	r = e.do(t, asModeler, http.MethodGet, "/api/v1/models/deceased_claims/history?limit=100", "")
	var hist struct {
		Items []struct {
			Action   string `json:"action"`
			Version  string `json:"version"`
			UserName string `json:"user_name"`
			Note     string `json:"note"`
			Live     bool   `json:"live"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.body, &hist); err != nil || len(hist.Items) == 0 {
		t.Fatalf("history: %s", r)
	}
	var actions []string
	for _, h := range hist.Items {
		actions = append(actions, h.Action)
	}
	got := strings.Join(actions, ",")
	if !strings.HasPrefix(got, "rollback,approve,submit,submit,submit,reject,submit") || !strings.HasSuffix(got, "ship") || !hist.Items[0].Live {
		t.Errorf("history %s", got)
	}
	var audited []string
	for _, l := range e.auditAfter(t, before) {
		if l.Action != "draft" && l.Action != "view" && l.Action != "download" {
			audited = append(audited, l.Action)
		}
	}
	if g := strings.Join(audited, ","); g != "submit,reject,submit,submit,submit,approve,rollback" {
		t.Errorf("audit %s", g)
	}
}
