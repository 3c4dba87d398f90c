package jobs

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"collider/synth"
)

// A generated province with its bad deliveries: the good deliveries load
// whole, the wrong-schema and corrupt ones fail alone with file and column
// named, the incomplete one is not read, and every planted bad cell is
// among the rejects, with nothing rejected that was not planted.
func TestLoad_GeneratedProvinceWithBadDeliveries(t *testing.T) {
	inbox := t.TempDir()
	sum, err := synth.Generate(context.Background(), synth.Options{Out: inbox, Seed: 3, Settlements: 20_000, Bad: true})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	ds, errs := Discover(inbox)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, d := range ds {
		if d.Name == synth.IncompleteDelivery {
			t.Fatalf("discovered %s without _SUCCESS", d.Name)
		}
	}
	results := (&Loader{Store: s}).LoadAll(context.Background(), ds)
	byName := map[string]LoadResult{}
	for _, r := range results {
		byName[r.Feed+"/"+r.Name] = r
	}
	for feed, rows := range sum.Rows {
		r := byName[feed+"/"+synth.DefaultDelivery]
		if r.Status != StatusLoaded || r.Loaded != rows || r.Rejected != 0 {
			t.Errorf("%s: %+v, want %d rows loaded", feed, r, rows)
		}
	}
	if r := byName["residents/"+synth.WrongSchemaDelivery]; r.Status != StatusFailed || !strings.Contains(r.Err.Error(), "hukou_region") {
		t.Errorf("wrong schema: %+v", r)
	}
	if r := byName["locations/"+synth.CorruptDelivery]; r.Status != StatusFailed || !strings.Contains(r.Err.Error(), synth.CorruptDelivery) {
		t.Errorf("corrupt: %+v", r)
	}
	bad := byName["settlements/"+synth.BadRowsDelivery]
	if bad.Status != StatusLoaded {
		t.Fatalf("bad rows delivery: %+v", bad)
	}
	f, err := os.Open(filepath.Join(inbox, synth.BadRowsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, r := range recs[1:] { // delivery,feed,file,row,column,reason
		want = append(want, strings.Join([]string{r[3], r[4], r[5]}, " "))
	}
	for _, r := range rejectsOf(t, s.DB, bad.DeliveryID) {
		got = append(got, strings.Join([]string{itoa(r.Row), r.Column, r.Reason}, " "))
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Fatalf("rejects differ from the planted bad cells:\nwant\n%s\ngot\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
	t.Logf("%d bad cells planted and rejected; %d deliveries", len(want), len(results))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
