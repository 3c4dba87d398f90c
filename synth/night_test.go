package synth

import (
	"context"
	"testing"
	"time"

	"collider/personid"
)

// A night is a day of the fixture province's life: a 365th of its
// settlements and of each police feed, by persons of the province, with ids
// of its own; late deaths of persons whose later settlements the year
// holds; corrections of the year's settlements that change only the amount;
// the same bytes for the same options.
func TestNight_IsADayOfItsProvince(t *testing.T) {
	dir := out(t)
	night := t.TempDir()
	opt := NightOptions{Province: fixtureOptions, Out: night, Night: 1, Share: 365}
	sum, err := Night(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	again := t.TempDir()
	opt.Out = again
	if _, err := Night(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	a, b := hashes(t, night), hashes(t, again)
	if len(a) != len(b) || len(a) != len(sum.Files) {
		t.Fatalf("%d files, again %d, summary %d", len(a), len(b), len(sum.Files))
	}
	for f, h := range a {
		if b[f] != h {
			t.Fatalf("%s differs between two writes of the same night", f)
		}
	}

	norm := func(id string) string {
		n, err := personid.Normalize(id)
		if err != nil {
			t.Fatalf("person id %q: %v", id, err)
		}
		return n
	}
	persons := map[string]bool{}
	for _, r := range readFeed[residentRow](t, dir, feedResidents, "0001") {
		persons[norm(r.PersonID)] = true
	}
	for _, r := range readFeed[civilStatusRow](t, dir, feedCivil, "0001") {
		persons[norm(r.PersonID)] = true
	}
	year := map[string]settlementRow{}
	visits := map[string][]time.Time{}
	for _, r := range readFeed[settlementRow](t, dir, feedSettlements, "0001") {
		year[r.SettlementID] = r
		visits[norm(r.PersonID)] = append(visits[norm(r.PersonID)], time.UnixMilli(r.VisitStart).UTC())
	}

	d := "night-0001"
	settled := readFeed[settlementRow](t, night, feedSettlements, d)
	if want := int64(sum.Corrections) + fixtureOptions.Settlements/365; int64(len(settled)) != want || sum.Corrections < 1 {
		t.Fatalf("%d settlements in the night, want %d (%d corrections)", len(settled), want, sum.Corrections)
	}
	firstDay := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	corrected := 0
	for _, s := range settled {
		p := norm(s.PersonID)
		if !persons[p] {
			t.Fatalf("settlement %s of %s, whom the province's police feeds do not know", s.SettlementID, p)
		}
		y, inYear := year[s.SettlementID]
		switch {
		case inYear:
			corrected++
			if y.PersonID != s.PersonID || y.VisitStart != s.VisitStart || y.InstitutionID != s.InstitutionID || y.FundAmount == s.FundAmount {
				t.Fatalf("correction %s changes more or less than the amount: %+v, was %+v", s.SettlementID, s, y)
			}
		case s.SettlementID < "S900000000000":
			t.Fatalf("night settlement id %s among the year's", s.SettlementID)
		case time.UnixMilli(s.SettledAt).UTC().Before(firstDay):
			t.Fatalf("night settlement %s settled before the night", s.SettlementID)
		}
	}
	if corrected != sum.Corrections {
		t.Fatalf("%d corrections found, summary says %d", corrected, sum.Corrections)
	}
	if n := len(readFeed[locationRow](t, night, feedLocations, d)); int64(n) != fixtureOptions.Settlements*50/63/365 {
		t.Fatalf("%d location records", n)
	}
	late := 0
	for _, c := range readFeed[civilStatusRow](t, night, feedCivil, d) {
		p := norm(c.PersonID)
		if !persons[p] {
			t.Fatalf("civil status of %s, whom the province does not know", p)
		}
		if c.Status != deceased {
			continue
		}
		death, _ := time.Parse("2006-01-02", *c.DeathDate)
		after := 0
		for _, v := range visits[p] {
			if v.Truncate(24 * time.Hour).After(death) {
				after++
			}
		}
		if after == 0 {
			t.Fatalf("late death of %s on %s, with no settlement after it", p, *c.DeathDate)
		}
		late++
	}
	if late != sum.LateDeaths || late < 3 {
		t.Fatalf("%d late deaths, summary %d", late, sum.LateDeaths)
	}
}
