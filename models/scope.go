// This file checks a model's declared scope against its fixture cases. A
// model that says `scope: person` promises that a settlement's verdict
// depends only on its own person's rows (see ScopePerson), which lets a
// nightly run re-examine only the persons the night's deliveries touched.
// The promise is checked, not trusted: each case runs again beside other
// persons, and the verdicts on the case's own settlements may not move.
package models

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"collider/feeds"
	"collider/personid"
)

// verdict is what a model said of one settlement in a fixture case.
type verdict struct{ reason, evidence string }

// personFeeds are the feeds whose rows belong to a person.
var personFeeds = map[string]bool{"settlements": true, "civil_status": true, "residents": true, "floating": true, "locations": true}

// checkPersonScope runs case c again with two other persons beside each of
// its own, and a copy of each institution that none of the case's persons
// visits:
//
//   - a twin: the person's rows under another ID, which the model must judge
//     as it judges the person (same reasons);
//   - a stranger whose records say the worst: dead since 1971, abroad since,
//     a household far away, registered and seen in every institution's city
//     at each of the person's visits, and staying at the institutions'
//     copies at the same times.
//
// Other persons' rows go only into feeds the case already has rows in: that
// a feed has any rows at all is the one fact about everyone a scoped model
// may use (a feed's first rows re-examine everything). The verdicts on the
// case's own settlements — flagged or not, reason and evidence — must be
// those of the case alone.
func (t *Tester) checkPersonScope(ctx context.Context, sc *scratch, m *Model, c Case, n int, before map[string]verdict) error {
	rows := map[string][]Row{}
	cols := map[string][]string{}
	for _, feed := range feeds.Names() {
		rows[feed], cols[feed] = m.Tests.rowsOf(c, feed)
	}
	p, err := newPerturbation(rows)
	if err != nil {
		return err
	}
	added := p.rows()
	for feed, rs := range added {
		for _, r := range rs {
			for k, v := range m.Tests.RowDefaults[feed] {
				if _, ok := r.Cells[k]; !ok {
					r.Cells[k] = v
				}
			}
		}
	}
	if err := sc.reset(ctx); err != nil {
		return err
	}
	caseDir := filepath.Join(sc.dir, "cases", fmt.Sprintf("%s-%03d-scope", m.Name, n))
	for _, feed := range feeds.Names() {
		all := append(append([]Row(nil), rows[feed]...), added[feed]...)
		if len(all) == 0 {
			continue
		}
		dir := filepath.Join(caseDir, feed)
		if err := writeParquet(ctx, sc.conn, filepath.Join(dir, "part-00000.parquet"), feed, cols[feed], all); err != nil {
			return err
		}
		if err := t.Load(ctx, sc.store, feed, dir); err != nil {
			return fmt.Errorf("scope check: load %s: %w", feed, err)
		}
	}
	var rejected int64
	if err := sc.conn.QueryRowContext(ctx, "SELECT count(*) FROM rejects").Scan(&rejected); err != nil {
		return err
	}
	if rejected > 0 {
		return fmt.Errorf("scope check: the loader rejected %d of the other persons' rows", rejected)
	}
	run, err := t.Runner.Run(ctx, sc.conn, m, RunOptions{Params: c.Params, Prefix: "scope", Suppressions: "fixture_suppressions"})
	if err != nil {
		return err
	}
	after := map[string]verdict{}
	q := fmt.Sprintf("SELECT settlement_id, reason, coalesce(CAST(evidence AS VARCHAR), '') FROM %s", run.FlagTable)
	rs, err := sc.conn.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	for rs.Next() {
		var id string
		var v verdict
		if err := rs.Scan(&id, &v.reason, &v.evidence); err != nil {
			rs.Close()
			return err
		}
		after[id] = v
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return err
	}

	var problems []string
	say := func(v verdict, ok bool) string {
		if !ok {
			return "not flagged"
		}
		return v.reason
	}
	for _, id := range p.settlements {
		b, wasFlagged := before[id]
		a, isFlagged := after[id]
		switch {
		case wasFlagged != isFlagged || b.reason != a.reason:
			problems = append(problems, fmt.Sprintf("%s: %s alone, %s beside other persons", id, say(b, wasFlagged), say(a, isFlagged)))
		case b.evidence != a.evidence:
			problems = append(problems, fmt.Sprintf("%s: its evidence changes beside other persons", id))
		}
		twin := id + twinSuffix
		if tw, ok := after[twin]; ok != wasFlagged || tw.reason != b.reason {
			problems = append(problems, fmt.Sprintf("%s: %s, but the same rows under another person's ID (%s): %s", id, say(b, wasFlagged), twin, say(tw, ok)))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
		}
		return &FileError{File: m.File, Line: m.scopeLine(),
			Err: fmt.Errorf("scope person: case %q (%s:%d): the verdicts change with other persons' rows (%s); the query reads rows of other persons: fix it, or remove `scope: person` and the model runs in full",
				c.Name, m.Tests.File, c.Line, strings.Join(problems, "; "))}
	}
	return nil
}

// Suffixes of the ids of other persons' settlements and records.
const (
	twinSuffix     = "-twin"
	strangerSuffix = "-stranger"
)

// perturbation makes the other persons of a case.
type perturbation struct {
	orig        map[string][]Row  // the case's rows by feed
	persons     []string          // the case's persons, normalized, sorted
	twin        map[string]string // person → the twin's ID
	stranger    map[string]string // person → the stranger's ID
	insts       map[string]string // institution → its copy's ID
	far         string            // a region code far from every institution
	settlements []string          // the case's settlement ids, sorted
}

func newPerturbation(rows map[string][]Row) (*perturbation, error) {
	p := &perturbation{orig: rows, twin: map[string]string{}, stranger: map[string]string{}, insts: map[string]string{}}
	used := map[string]bool{}
	for feed, rs := range rows {
		if !personFeeds[feed] {
			continue
		}
		for _, r := range rs {
			id, err := personid.Normalize(r.Cells["person_id"].Text)
			if err != nil {
				return nil, fmt.Errorf("scope check: person %q: %w", r.Cells["person_id"].Text, err)
			}
			if !used[id] {
				used[id] = true
				p.persons = append(p.persons, id)
			}
			if feed == "settlements" {
				p.settlements = append(p.settlements, r.Cells["settlement_id"].Text)
			}
		}
	}
	sort.Strings(p.persons)
	sort.Strings(p.settlements)
	for _, id := range p.persons {
		var err error
		if p.twin[id], err = otherID(id, used); err != nil {
			return nil, err
		}
		if p.stranger[id], err = otherID(id, used); err != nil {
			return nil, err
		}
	}
	usedInst := map[string]bool{}
	provinces := map[string]bool{}
	for _, r := range rows["institutions"] {
		usedInst[r.Cells["institution_id"].Text] = true
		provinces[r.Cells["region_code"].Text[:min(2, len(r.Cells["region_code"].Text))]] = true
	}
	for _, r := range rows["institutions"] {
		id := r.Cells["institution_id"].Text
		for k := int64(99999999999); ; k-- {
			cand := fmt.Sprintf("%s%011d", id[:1], k)
			if !usedInst[cand] {
				usedInst[cand] = true
				p.insts[id] = cand
				break
			}
		}
	}
	for _, code := range []string{"650102", "460105", "230102"} { // Ürümqi, Haikou, Harbin
		if !provinces[code[:2]] {
			p.far = code
			break
		}
	}
	return p, nil
}

// otherID is a valid ID not in used, of the same region, birth date and sex
// as id (the sequence moves by an even step), and marks it used.
func otherID(id string, used map[string]bool) (string, error) {
	seq := 0
	fmt.Sscanf(id[14:17], "%d", &seq)
	for step := 2; step < 1000; step += 2 {
		first17 := id[:14] + fmt.Sprintf("%03d", (seq+step)%1000)
		c, err := personid.CheckChar(first17)
		if err != nil {
			return "", err
		}
		cand := first17 + string(c)
		if !used[cand] {
			used[cand] = true
			return cand, nil
		}
	}
	return "", fmt.Errorf("scope check: no free ID beside %s", id)
}

// rows are the other persons' rows and the institutions' copies, by feed.
func (p *perturbation) rows() map[string][]Row {
	out := map[string][]Row{}
	copyRow := func(r Row, set map[string]string) Row {
		cells := make(map[string]Cell, len(r.Cells)+len(set))
		for k, v := range r.Cells {
			cells[k] = v
		}
		for k, v := range set {
			cells[k] = Cell{Text: v}
		}
		return Row{Line: r.Line, Cells: cells}
	}
	has := func(feed string) bool { return len(p.orig[feed]) > 0 }
	for _, r := range p.orig["institutions"] {
		out["institutions"] = append(out["institutions"], copyRow(r, map[string]string{"institution_id": p.insts[r.Cells["institution_id"].Text]}))
	}
	// The twins: the same rows under other IDs.
	for feed, rs := range p.orig {
		if !personFeeds[feed] {
			continue
		}
		for _, r := range rs {
			id, _ := personid.Normalize(r.Cells["person_id"].Text)
			set := map[string]string{"person_id": p.twin[id]}
			switch feed {
			case "settlements":
				set["settlement_id"] = r.Cells["settlement_id"].Text + twinSuffix
			case "locations":
				set["event_id"] = r.Cells["event_id"].Text + twinSuffix
			}
			out[feed] = append(out[feed], copyRow(r, set))
		}
	}
	// The strangers: the worst records, where the case has such records at all.
	regions := map[string]bool{}
	var instRegions []string
	for _, r := range p.orig["institutions"] {
		if code := r.Cells["region_code"].Text; !regions[code] {
			regions[code] = true
			instRegions = append(instRegions, code)
		}
	}
	sort.Strings(instRegions)
	visits := map[string][]Row{}
	for _, r := range p.orig["settlements"] {
		id, _ := personid.Normalize(r.Cells["person_id"].Text)
		visits[id] = append(visits[id], r)
	}
	for i, id := range p.persons {
		s := p.stranger[id]
		line := 0
		if len(visits[id]) > 0 {
			line = visits[id][0].Line
		}
		row := func(cells map[string]string) Row {
			r := Row{Line: line, Cells: map[string]Cell{}}
			for k, v := range cells {
				r.Cells[k] = Cell{Text: v}
			}
			return r
		}
		if has("civil_status") {
			out["civil_status"] = append(out["civil_status"], row(map[string]string{"person_id": s, "status": "deceased", "death_date": "1971-01-01", "updated_at": "1971-01-02 00:00:00"}))
		}
		if has("residents") && p.far != "" {
			out["residents"] = append(out["residents"], row(map[string]string{"person_id": s, "name": "某某", "hukou_region": p.far}))
		}
		if has("floating") {
			for _, code := range instRegions {
				out["floating"] = append(out["floating"], row(map[string]string{"person_id": s, "region_code": code, "valid_from": "1971-01-01"}))
			}
		}
		if has("locations") {
			out["locations"] = append(out["locations"], row(map[string]string{"event_id": fmt.Sprintf("E%d%s", i, strangerSuffix), "person_id": s, "kind": "abroad", "start_time": "1971-01-01 00:00:00"}))
			for j, v := range visits[id] {
				at := v.Cells["visit_start"].Text
				for k, code := range append(append([]string(nil), instRegions...), p.far) {
					if code == "" {
						continue
					}
					out["locations"] = append(out["locations"], row(map[string]string{
						"event_id": fmt.Sprintf("E%d-%d-%d%s", i, j, k, strangerSuffix), "person_id": s, "kind": "hotel", "start_time": at, "region_code": code}))
				}
			}
		}
		for _, v := range visits[id] {
			out["settlements"] = append(out["settlements"], copyRow(v, map[string]string{
				"person_id": s, "settlement_id": v.Cells["settlement_id"].Text + strangerSuffix,
				"institution_id": p.instCopy(v.Cells["institution_id"].Text)}))
		}
	}
	return out
}

// instCopy is the copy of an institution, or the institution itself when
// the case does not declare it.
func (p *perturbation) instCopy(id string) string {
	if c, ok := p.insts[id]; ok {
		return c
	}
	return id
}

// scopeLine is the line of the header's scope declaration.
func (m *Model) scopeLine() int {
	for i, l := range strings.Split(m.Text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "--")), "scope:") {
			return i + 1
		}
	}
	return 1
}
