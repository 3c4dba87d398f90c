package jobs

import (
	"context"
	"strings"
	"testing"

	"collider/casebook"
	"collider/synth"
)

// The check passes on a store the pipeline and the workflow wrote, and each
// invariant catches the damage it exists for — and only that invariant.
func TestCheck_EachInvariantCatchesItsDamage(t *testing.T) {
	ctx := context.Background()
	inbox := t.TempDir()
	if _, err := synth.Generate(ctx, synth.Options{Out: inbox, Seed: 3, Settlements: 5000, Bad: true}); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, inbox)
	out, _ := p.Run(ctx, "cli", "test")
	if out.BatchID == 0 {
		t.Fatalf("no batch: %v", out.Err)
	}
	db := p.Store.DB
	// A city works some of its leads through the whole workflow, and one back to the province.
	var city string
	if err := db.QueryRow("SELECT city_code FROM casebook.leads WHERE city_code NOT LIKE '__0000' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").Scan(&city); err != nil {
		t.Fatal(err)
	}
	u := casebook.User{ID: 1, Name: "bureau", Role: casebook.RoleCity, City: city}
	var leads []int64
	rows, _ := db.Query("SELECT lead_id FROM casebook.leads WHERE city_code = ? ORDER BY lead_id LIMIT 3", city)
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		leads = append(leads, id)
	}
	rows.Close()
	amount := 120.5
	for _, a := range []casebook.Action{{Action: "accept"}, {Action: "investigate"}, {Action: "close", Outcome: "confirmed", RecoveredAmount: &amount, Note: "属实"}} {
		if _, err := p.Casebook.Act(ctx, u, leads[0], a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Casebook.Act(ctx, u, leads[1], casebook.Action{Action: "return", Note: "非本市"}); err != nil {
		t.Fatal(err)
	}
	r, err := Check(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Fatalf("a healthy store fails the check: %+v", r.Broken())
	}

	for _, tc := range []struct {
		invariant, damage, example string
	}{
		{"issued_once", "DELETE FROM casebook.issued WHERE clue_id = (SELECT min(clue_id) FROM casebook.clues)", "are issued to it"},
		{"lead_of_its_clue_and_city", "UPDATE casebook.leads SET city_code = '620000' WHERE lead_id = " + itoa(leads[2]), "its last event left it with " + city},
		{"events_follow_the_workflow", "UPDATE casebook.lead_events SET to_status = 'closed', action = 'close' WHERE lead_id = " + itoa(leads[2]) + " AND action = 'route'", "not a transition of the workflow"},
		{"events_follow_the_workflow", "UPDATE casebook.lead_events SET recovered_amount = NULL WHERE lead_id = " + itoa(leads[0]) + " AND action = 'close'", "a close without the recovered amount"},
		{"events_follow_the_workflow", "UPDATE casebook.leads SET status = 'accepted' WHERE lead_id = " + itoa(leads[2]), "is accepted but its last event left it new"},
		{"batch_totals", "UPDATE casebook.batches SET fund_amount = fund_amount + 1 WHERE batch_id = " + itoa(out.BatchID), "records"},
		{"delivery_counts", "DELETE FROM settlements WHERE settlement_id = (SELECT min(settlement_id) FROM settlements)", "settlements holds"},
		{"delivery_counts", "UPDATE deliveries SET rejected = rejected + 1 WHERE delivery_id = (SELECT min(delivery_id) FROM deliveries WHERE status = 'loaded')", "rejected"},
	} {
		t.Run(tc.invariant+"/"+tc.example, func(t *testing.T) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, tc.damage); err != nil {
				t.Fatal(err)
			}
			invs, err := casebook.CheckInvariants(ctx, tx, append(casebook.Invariants(), DeliveryInvariants()...))
			if err != nil {
				t.Fatal(err)
			}
			for _, inv := range invs {
				switch {
				case inv.Name == tc.invariant && inv.Violations == 0:
					t.Errorf("%s does not see: %s", inv.Name, tc.damage)
				case inv.Name == tc.invariant && !strings.Contains(strings.Join(inv.Examples, "\n"), tc.example):
					t.Errorf("%s says %q, want it to say %q", inv.Name, inv.Examples, tc.example)
				case inv.Name != tc.invariant && inv.Violations > 0:
					t.Errorf("%s also fires: %v", inv.Name, inv.Examples)
				case inv.Name == tc.invariant:
					t.Logf("%s: %s", inv.Name, inv.Examples[0])
				}
			}
		})
	}
}
