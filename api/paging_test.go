// This file checks cursor paging on every list: following next_cursor from
// the first page reaches every item exactly once, whatever the page size.
package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// pageThrough follows a list's cursor and returns the ids of its items.
func (e *testEnv) pageThrough(t *testing.T, as, path, idField string, limit int) []int64 {
	t.Helper()
	var ids []int64
	seen := map[int64]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5000 {
			t.Fatalf("%s: the cursor never ends", path)
		}
		var p struct {
			Items      []map[string]json.RawMessage `json:"items"`
			NextCursor *string                      `json:"next_cursor"`
		}
		e.getJSON(t, as, fmt.Sprintf("%s?limit=%d%s", path, limit, cursor), &p)
		for _, item := range p.Items {
			var id int64
			if err := json.Unmarshal(item[idField], &id); err != nil {
				t.Fatalf("%s: item without %s", path, idField)
			}
			if seen[id] {
				t.Fatalf("%s: %s %d on two pages", path, idField, id)
			}
			seen[id] = true
			ids = append(ids, id)
		}
		if p.NextCursor == nil {
			return ids
		}
		cursor = "&cursor=" + *p.NextCursor
	}
}

// Every list, followed page by page, holds everything the store has, for
// small pages and for a page size over the server's maximum.
func TestPaging_EveryListFollowsItsCursorToTheEnd(t *testing.T) {
	e := getEnv(t)
	// More runs than a default page, so that a page size the server cuts
	// down shows whether the cursor still says there is more.
	if _, err := e.store.DB.Exec(`INSERT INTO casebook.runs (run_id, trigger, started_by, status, started_at, finished_at)
		SELECT nextval('casebook.run_ids'), 'schedule', 'paging test', 'succeeded', TIMESTAMP '2025-01-01' + to_days(CAST(i AS INTEGER)), TIMESTAMP '2025-01-01' + to_days(CAST(i AS INTEGER))
		FROM range(150) t(i)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		as, path, idField, count string
	}{
		{asProvince, "/api/v1/batches", "batch_id", "SELECT count(*) FROM casebook.batches"},
		{asProvince, "/api/v1/clues", "clue_id", "SELECT count(*) FROM casebook.clues"},
		{asCityOwn, "/api/v1/clues", "clue_id", "SELECT count(*) FROM casebook.leads WHERE city_code = '" + ownCity + "'"},
		{asProvince, "/api/v1/leads", "lead_id", "SELECT count(*) FROM casebook.leads"},
		{asProvince, "/api/v1/runs", "run_id", "SELECT count(*) FROM casebook.runs"},
		{asProvince, "/api/v1/deliveries", "delivery_id", "SELECT count(*) FROM feeds.deliveries"},
		{asAdmin, "/api/v1/audit", "audit_id", "SELECT count(*) FROM casebook.audit"},
	} {
		for _, limit := range []int{1, 7, 5000} {
			t.Run(fmt.Sprintf("%s as %s by %d", tc.path, tc.as, limit), func(t *testing.T) {
				got := e.pageThrough(t, tc.as, tc.path, tc.idField, limit)
				var want int
				e.scalar(t, &want, tc.count)
				if len(got) != want {
					t.Errorf("%d items over all pages, the store has %d", len(got), want)
				}
			})
		}
	}
	t.Run("a cursor that is not a number is a JSON 400", func(t *testing.T) {
		r := e.do(t, asProvince, http.MethodGet, "/api/v1/runs?cursor=x", "")
		if r.status != http.StatusBadRequest || checkErrorShape(r) != "" {
			t.Fatalf("%s", r)
		}
	})
}

// Answers written from reused buffers are each their own: clients asking
// for different pages at once each get exactly what they get alone.
func TestJSON_AnswersAtOnceAreEachTheirOwn(t *testing.T) {
	e := getEnv(t)
	paths := []string{"/api/v1/clues?limit=50", "/api/v1/clues?limit=3", "/api/v1/leads?limit=50", "/api/v1/leads?limit=1", "/api/v1/batches"}
	alone := map[string]string{}
	for _, p := range paths {
		alone[p] = string(e.do(t, asProvince, http.MethodGet, p, "").body)
	}
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for i := 0; i < 40; i++ {
				p := paths[(w+i)%len(paths)]
				r, err := e.try(asProvince, http.MethodGet, p, "")
				if err == nil && string(r.body) != alone[p] {
					err = fmt.Errorf("%s answered %d bytes at once, %d alone", p, len(r.body), len(alone[p]))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
