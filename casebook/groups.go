// This file keeps the leads in memory also as groups: leads that agree on
// everything a filter, a count or a board looks at (batch, model and
// version, severity, city, status, outcome, due date, ever accepted), with
// their sums. A province's million leads fall into a few thousand groups,
// so the inbox's tabs, the board, a batch's breakdowns and the count of a
// clue list add up groups instead of reading every lead. The writers that
// change a lead move it between groups in the same critical section.
package casebook

import (
	"context"
	"sort"
)

// groupKey is what a group's leads agree on.
type groupKey struct {
	batch                                  int64
	model, version, severity, city, status string
	outcome, due                           string
	accepted                               bool
}

// group is a group's leads, summed. proto carries the key in a lead's
// fields, so that the conditions written for leads select groups too.
type group struct {
	proto                                         memLead
	leads, settlements, fundCents, recoveredCents int64
}

func keyOf(m *memLead) groupKey {
	return groupKey{batch: m.batch, model: m.model, version: m.version, severity: m.severity, city: m.City, status: m.Status,
		outcome: m.Outcome, due: m.DueDate, accepted: m.accepted}
}

type groups map[groupKey]*group

// add counts a lead in its group (sign 1) or takes it out (sign -1); a
// group left without leads is dropped.
func (gs groups) add(m *memLead, sign int64) {
	k := keyOf(m)
	g := gs[k]
	if g == nil {
		g = &group{proto: memLead{batch: k.batch, model: k.model, version: k.version, severity: k.severity, accepted: k.accepted}}
		g.proto.City, g.proto.Status, g.proto.Outcome, g.proto.DueDate = k.city, k.status, k.outcome, k.due
		gs[k] = g
	}
	g.leads += sign
	g.settlements += sign * m.settlements
	g.fundCents += sign * m.fundCents
	g.recoveredCents += sign * m.recoveredCents
	if g.leads == 0 {
		delete(gs, k)
	}
}

// groupLeads groups leads.
func groupLeads(leads []memLead) groups {
	gs := groups{}
	for i := range leads {
		gs.add(&leads[i], 1)
	}
	return gs
}

// groupsView runs f over the groups, loading the leads first if need be.
func (c *Casebook) groupsView(ctx context.Context, f func(gs groups)) error {
	return c.memoryView(ctx, func(mem *leadMemory) { f(mem.groups) })
}

// cityIndex is the positions in memory of each city's leads, ascending:
// an inbox sorted by due date or score reads its city's leads, not the
// province's. A lead keeps its position (new leads come after the others;
// when they do not, the index is made again).
type cityIndex map[string][]int32

// each calls visit with the positions of city's leads (every lead's when
// city is ""), in id order, from the first that from accepts (from is
// false, then true, along the ids; nil: the first), until visit says stop.
func (mem *leadMemory) each(city string, from func(m *memLead) bool, visit func(i int32) bool) {
	n, at := len(mem.leads), func(j int) int32 { return int32(j) }
	if city != "" {
		ps := mem.cities[city]
		n, at = len(ps), func(j int) int32 { return ps[j] }
	}
	start := 0
	if from != nil {
		start = sort.Search(n, func(j int) bool { return from(&mem.leads[at(j)]) })
	}
	for j := start; j < n && visit(at(j)); j++ {
	}
}

// idAbove is each's from for an id cursor.
func idAbove(id int64) func(m *memLead) bool { return func(m *memLead) bool { return m.ID > id } }

// cityOf is the one city u reads under a filter's city: a city user's own.
func cityOf(u User, city string) string {
	if u.Role == RoleCity {
		return u.City
	}
	return city
}

func indexCities(leads []memLead) cityIndex {
	ci := cityIndex{}
	for i := range leads {
		ci[leads[i].City] = append(ci[leads[i].City], int32(i))
	}
	return ci
}

func (ci cityIndex) add(city string, pos int32) {
	ps := ci[city]
	i := sort.Search(len(ps), func(i int) bool { return ps[i] >= pos })
	if i < len(ps) && ps[i] == pos {
		return
	}
	// A new slice when not appending: a reader may hold the old one.
	if i == len(ps) {
		ci[city] = append(ps, pos)
		return
	}
	ci[city] = append(append(ps[:i:i], pos), ps[i:]...)
}

func (ci cityIndex) remove(city string, pos int32) {
	ps := ci[city]
	i := sort.Search(len(ps), func(i int) bool { return ps[i] >= pos })
	if i < len(ps) && ps[i] == pos {
		ci[city] = append(ps[:i:i], ps[i+1:]...)
	}
	if len(ci[city]) == 0 {
		delete(ci, city)
	}
}
