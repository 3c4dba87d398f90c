// This file keeps every lead in memory (leads are small: a province's
// million is a few hundred MB), with its events and its clue but for the
// clue's settlements, narrative and evidence. Inboxes, lead lookups,
// events, scope checks, counts and the board are answered from it without
// a query. DuckDB stays the system of record: the two writers of leads (Act, Publish) change memory in the
// same critical section as they commit, after the commit, so that memory
// never shows what a rolled-back transaction wrote and never misses what
// a committed one did.
package casebook

import (
	"context"
	"database/sql"
	"math"
	"sort"
	"sync"
	"time"

	"collider/domain"
)

// memLead is a lead as memory holds it.
type memLead struct {
	Lead                   // without its clue; Overdue is computed when read
	batch           int64  // the clue's
	model, version  string // interned
	severity        string
	score           float64
	personID        string
	personName      string
	institutionName string
	fundCents       int64 // the clue's fund amount
	recoveredCents  int64
	settlements     int64
	accepted        bool    // ever accepted (the board counts it)
	events          []Event // oldest first

	// The rest of the clue but its settlements, narrative and evidence,
	// which the read cache or a query of those three columns adds.
	reasons               string // ;-joined, interned
	institutionID         string
	firstVisit, lastVisit time.Time // zero: none
	totalCents            int64
	followUpOf            int64 // 0: none
}

// leadMemory holds the leads by id.
type leadMemory struct {
	// writeMu orders the writers: each holds it from its commit until
	// memory shows the commit.
	writeMu sync.Mutex
	mu      sync.RWMutex
	loaded  bool
	leads   []memLead // by lead id
	groups  groups    // the same leads, grouped
	cities  cityIndex // their positions by city
}

// memColumns are a lead's columns with its clue's that memory keeps; the
// clock argument of leadColumns comes first.
const memColumns = leadColumns + `, c.batch_id, c.model, c.model_version, c.severity, c.score, c.person_id,
	coalesce(c.person_name, ''), coalesce(c.institution_name, ''), CAST(round(c.fund_amount * 100) AS BIGINT),
	coalesce(CAST(round(l.recovered_amount * 100) AS BIGINT), 0), c.settlement_count, a.lead_id IS NOT NULL,
	c.reasons, c.institution_id, c.first_visit, c.last_visit, CAST(round(c.total_amount * 100) AS BIGINT), coalesce(c.follow_up_of, 0)`

const memFrom = ` FROM casebook.leads l JOIN casebook.clues c ON c.clue_id = l.lead_id
	LEFT JOIN (SELECT DISTINCT lead_id FROM casebook.lead_events WHERE action = 'accept') a ON a.lead_id = l.lead_id`

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readLeads reads leads into memory's form: all of them, or a batch's.
func (c *Casebook) readLeads(ctx context.Context, q querier, batch int64) ([]memLead, error) {
	where, args := "", []any{domain.DBTime(c.now())}
	if batch > 0 {
		where, args = " WHERE c.batch_id = ?", append(args, batch)
	}
	rows, err := q.QueryContext(ctx, "SELECT "+memColumns+memFrom+where+" ORDER BY l.lead_id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []memLead
	in := interner()
	for rows.Next() {
		var m memLead
		var first, last sql.NullTime
		err := scanLead(scanAppend{rows, []any{&m.batch, &m.model, &m.version, &m.severity, &m.score, &m.personID, &m.personName,
			&m.institutionName, &m.fundCents, &m.recoveredCents, &m.settlements, &m.accepted,
			&m.reasons, &m.institutionID, &first, &last, &m.totalCents, &m.followUpOf}}, &m.Lead)
		if err != nil {
			return nil, err
		}
		if first.Valid {
			m.firstVisit = domain.Wall(first.Time)
		}
		if last.Valid {
			m.lastVisit = domain.Wall(last.Time)
		}
		in(&m.reasons)
		in(&m.City)
		in(&m.Status)
		in(&m.Outcome)
		in(&m.model)
		in(&m.version)
		in(&m.severity)
		in(&m.DueDate)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, readEvents(ctx, q, batch, out, in)
}

// interner makes equal strings share their bytes (a million leads name a
// few dozen cities, statuses and models).
func interner() func(s *string) {
	seen := map[string]string{}
	return func(s *string) {
		if v, ok := seen[*s]; ok {
			*s = v
		} else {
			seen[*s] = *s
		}
	}
}

const eventColumns = `event_id, lead_id, event_at, coalesce(user_id, 0), user_name, role, action,
	coalesce(from_status, ''), to_status, city_code, coalesce(outcome, ''), CAST(recovered_amount AS DOUBLE), coalesce(note, '')`

// readEvents attaches their events to leads (in id order): all leads', or
// a batch's.
func readEvents(ctx context.Context, q querier, batch int64, leads []memLead, in func(*string)) error {
	where, args := "", []any{}
	if batch > 0 {
		where, args = " WHERE lead_id IN (SELECT clue_id FROM casebook.clues WHERE batch_id = ?)", []any{batch}
	}
	rows, err := q.QueryContext(ctx, "SELECT "+eventColumns+" FROM casebook.lead_events"+where+" ORDER BY lead_id, event_id", args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var e Event
		var rec sql.NullFloat64
		if err := rows.Scan(&e.ID, &e.LeadID, &e.At, &e.UserID, &e.UserName, &e.Role, &e.Action, &e.From, &e.To, &e.City, &e.Outcome, &rec, &e.Note); err != nil {
			return err
		}
		if rec.Valid {
			e.RecoveredAmount = &rec.Float64
		}
		e.At = domain.Wall(e.At)
		for _, s := range []*string{&e.UserName, &e.Role, &e.Action, &e.From, &e.To, &e.City, &e.Outcome} {
			in(s)
		}
		for i < len(leads) && leads[i].ID < e.LeadID {
			i++
		}
		if i < len(leads) && leads[i].ID == e.LeadID {
			leads[i].events = append(leads[i].events, e)
		}
	}
	return rows.Err()
}

// scanAppend scans a row's extra columns after those scanLead asks for.
type scanAppend struct {
	rows  *sql.Rows
	extra []any
}

func (s scanAppend) Scan(dest ...any) error { return s.rows.Scan(append(dest, s.extra...)...) }

// LoadLeads reads every lead into memory; the server does it when it
// starts, and any read does it when nothing has.
func (c *Casebook) LoadLeads(ctx context.Context) error {
	c.mem.writeMu.Lock()
	defer c.mem.writeMu.Unlock()
	leads, err := c.readLeads(ctx, c.DB, 0)
	if err != nil {
		return err
	}
	gs, ci := groupLeads(leads), indexCities(leads)
	c.mem.mu.Lock()
	c.mem.leads, c.mem.groups, c.mem.cities, c.mem.loaded = leads, gs, ci, true
	c.mem.mu.Unlock()
	c.cache.clear()
	return nil
}

// forgetLeads makes the next read load the leads again (after a change
// that did not go through Act or Publish: Synthesize, tests).
func (c *Casebook) forgetLeads() {
	c.mem.mu.Lock()
	c.mem.leads, c.mem.groups, c.mem.cities, c.mem.loaded = nil, nil, nil, false
	c.mem.mu.Unlock()
	c.cache.clear()
}

// leadsView runs f over the leads in memory, loading them first if need be.
func (c *Casebook) leadsView(ctx context.Context, f func(leads []memLead)) error {
	return c.memoryView(ctx, func(mem *leadMemory) { f(mem.leads) })
}

// memoryView runs f over the leads in memory, their groups and index,
// loading them first if need be. f only reads.
func (c *Casebook) memoryView(ctx context.Context, f func(mem *leadMemory)) error {
	c.mem.mu.RLock()
	if !c.mem.loaded {
		c.mem.mu.RUnlock()
		if err := c.LoadLeads(ctx); err != nil {
			return err
		}
		c.mem.mu.RLock()
	}
	defer c.mem.mu.RUnlock()
	f(&c.mem)
	return nil
}

// find is the index of a lead in leads, or -1.
func find(leads []memLead, id int64) int {
	i := sort.Search(len(leads), func(i int) bool { return leads[i].ID >= id })
	if i < len(leads) && leads[i].ID == id {
		return i
	}
	return -1
}

// memLeadByID returns a lead from memory.
func (c *Casebook) memLeadByID(ctx context.Context, id int64) (m memLead, ok bool, err error) {
	err = c.leadsView(ctx, func(leads []memLead) {
		if i := find(leads, id); i >= 0 {
			m, ok = leads[i], true
		}
	})
	return m, ok, err
}

// today is the casebook's date in China, as due dates are written.
func (c *Casebook) today() string { return c.now().In(domain.ChinaTime).Format("2006-01-02") }

// overdue reports whether a lead is open past its due date.
func (m *memLead) overdue(today string) bool { return m.Status != StatusClosed && m.DueDate < today }

// lead is the lead as the API shows it, Overdue as of today.
func (m *memLead) lead(today string) Lead {
	l := m.Lead
	l.Overdue = m.overdue(today)
	return l
}

// commitLeads commits tx and applies its change to memory in one critical
// section: nothing reads memory between the commit and the change.
func (c *Casebook) commitLeads(tx *sql.Tx, apply func(mem *leadMemory)) error {
	c.mem.writeMu.Lock()
	defer c.mem.writeMu.Unlock()
	if err := tx.Commit(); err != nil {
		return err
	}
	c.mem.mu.Lock()
	if c.mem.loaded {
		apply(&c.mem)
	}
	c.mem.mu.Unlock()
	return nil
}

// appendLeads adds newly published leads to memory, in id order (a lead
// memory has already is kept as it is), and to their groups.
func (mem *leadMemory) appendLeads(added []memLead) {
	before := len(mem.leads)
	atTheEnd := before == 0 || len(added) == 0 || added[0].ID > mem.leads[before-1].ID
	mem.leads = appendLeads(mem.leads, added, mem.groups)
	if !atTheEnd { // positions moved
		mem.cities = indexCities(mem.leads)
		return
	}
	for i := before; i < len(mem.leads); i++ {
		mem.cities.add(mem.leads[i].City, int32(i))
	}
}

func appendLeads(leads, added []memLead, gs groups) []memLead {
	sorted := len(leads) == 0 || len(added) == 0 || added[0].ID > leads[len(leads)-1].ID
	if !sorted {
		fresh := added[:0:0]
		for _, m := range added {
			if find(leads, m.ID) < 0 {
				fresh = append(fresh, m)
			}
		}
		added = fresh
	}
	for i := range added {
		gs.add(&added[i], 1)
	}
	leads = append(leads, added...)
	if !sorted {
		sort.Slice(leads, func(i, j int) bool { return leads[i].ID < leads[j].ID })
	}
	return leads
}

// applyAction changes a lead in memory as Act changed its row, moves it to
// its new group, and appends the event Act wrote.
func (mem *leadMemory) applyAction(a Action, e Event) {
	i := find(mem.leads, e.LeadID)
	if i < 0 {
		return
	}
	m := &mem.leads[i]
	mem.groups.add(m, -1)
	defer mem.groups.add(m, 1)
	if m.City != e.City {
		mem.cities.remove(m.City, int32(i))
		mem.cities.add(e.City, int32(i))
	}
	to, city, note, now := e.To, e.City, e.Note, e.At
	m.Status, m.City, m.UpdatedAt = to, city, now
	if a.Outcome != "" {
		m.Outcome = a.Outcome
	}
	if a.RecoveredAmount != nil {
		// As DECIMAL(18,2) stores it.
		m.recoveredCents = int64(math.Round(*a.RecoveredAmount * 100))
		r := float64(m.recoveredCents) / 100
		m.RecoveredAmount = &r
	}
	if note != "" {
		m.Note = note
	}
	if to == StatusClosed && m.ClosedAt == nil {
		t := now
		m.ClosedAt = &t
	}
	if a.Action == ActionAccept {
		m.accepted = true
	}
	if m.RecoveredAmount != nil && a.RecoveredAmount != nil {
		r := *m.RecoveredAmount
		e.RecoveredAmount = &r
	}
	// A reader holds a copy of the slice, never sees past its length.
	m.events = append(m.events, e)
}

// clue is the lead's clue, unmasked, from memory and the three columns
// memory does not keep, the evidence as encoding/json writes it.
func (m *memLead) clue(settlementIDs, narrative string, evidence []byte) *Clue {
	cl := &Clue{ID: m.ID, BatchID: m.batch, Model: m.model, ModelVersion: m.version, Severity: m.severity, Score: m.score,
		Reasons: splitList(m.reasons), PersonID: m.personID, PersonName: m.personName, InstitutionID: m.institutionID,
		InstitutionName: m.institutionName, City: m.City, SettlementCount: int(m.settlements), SettlementIDs: splitList(settlementIDs),
		TotalAmount: float64(m.totalCents) / 100, FundAmount: float64(m.fundCents) / 100, Narrative: narrative, Status: m.Status}
	if !m.firstVisit.IsZero() {
		t := m.firstVisit
		cl.FirstVisit = &t
	}
	if !m.lastVisit.IsZero() {
		t := m.lastVisit
		cl.LastVisit = &t
	}
	if m.followUpOf != 0 {
		f := m.followUpOf
		cl.FollowUpOf = &f
	}
	cl.setEncodedEvidence(evidence)
	return cl
}

// dbTime is a time as it reads back from the casebook: China wall time to
// the microsecond.
func dbTime(t time.Time) time.Time { return t.In(domain.ChinaTime).Truncate(time.Microsecond) }
