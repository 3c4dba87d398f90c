package casebook

import (
	"context"
	"encoding/json"
	"testing"
)

func TestSynthesize_WritesBatchesOfCluesLeadsAndEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids, err := f.cb.Synthesize(ctx, 70_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("batches %v, want 2 (50,000 + 20,000)", ids)
	}
	count := func(q string) int64 {
		var n int64
		if err := f.cb.DB.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for q, want := range map[string]int64{
		"SELECT count(*) FROM casebook.clues":                                             70_000,
		"SELECT count(*) FROM casebook.leads":                                             70_000,
		"SELECT count(DISTINCT lead_id) FROM casebook.lead_events":                        70_000,
		"SELECT sum(clues) FROM casebook.batches":                                         70_000,
		"SELECT clues FROM casebook.batches WHERE batch_id = " + itoa(ids[1]):             20_000,
		"SELECT count(DISTINCT city_code) FROM casebook.clues":                            14,
		"SELECT count(*) FROM casebook.leads WHERE status = 'new'":                        count("SELECT count(*) FROM casebook.leads") - count("SELECT count(*) FROM casebook.leads WHERE status <> 'new'"),
		"SELECT count(*) FROM casebook.clues WHERE length(evidence) < 200":                0,
		"SELECT count(*) FROM casebook.clues WHERE length(person_id) <> 18":               0,
		"SELECT count(DISTINCT status) FROM casebook.leads":                               5,
		"SELECT count(*) FROM casebook.leads WHERE status = 'closed' AND outcome IS NULL": 0,
	} {
		if got := count(q); got != want {
			t.Errorf("%s: %d, want %d", q, got, want)
		}
	}
	// The events end where the lead stands: the workflow's checks hold.
	if n := count(`SELECT count(*) FROM casebook.leads l WHERE l.status <> (SELECT to_status FROM casebook.lead_events e
		WHERE e.lead_id = l.lead_id ORDER BY event_id DESC LIMIT 1)`); n != 0 {
		t.Errorf("%d leads whose last event is not their status", n)
	}
	// A synthetic lead reads like a published one.
	l, err := f.cb.Lead(ctx, f.province, ids[0]*0+count("SELECT min(lead_id) FROM casebook.leads"))
	if err != nil {
		t.Fatal(err)
	}
	var ev []map[string]any
	if err := json.Unmarshal(l.Clue.Evidence, &ev); err != nil || len(ev) != l.Clue.SettlementCount || len(l.Clue.SettlementIDs) != l.Clue.SettlementCount {
		t.Errorf("evidence %s (%v), %d settlements", l.Clue.Evidence, err, l.Clue.SettlementCount)
	}
}
