// This file holds the reads the pages need beyond the API's lists: a lead
// inbox with its counts per status, filters and orders; the police records
// behind a lead; a batch's totals broken down. They go through the same
// scope and masking as every other read (leadScope, clueScope, Mask), and
// views of people in clear are audited like the API's.
package casebook

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"collider/domain"
)

// Inbox orders.
const (
	SortID    = "id"    // oldest first: the API's order
	SortDue   = "due"   // the due date, soonest first
	SortScore = "score" // the clue's score, highest first
)

// InboxQuery is a lead list as the inbox page asks for it.
type InboxQuery struct {
	City     string // province only
	Status   string // "" for every status
	Model    string
	Severity string
	Overdue  bool
	Sort     string // SortID, SortDue or SortScore
	Cursor   string // the last row's cursor of the page before
	Limit    int
}

// InboxRow is a lead with what its row shows of its clue.
type InboxRow struct {
	Lead
	Model           string  `json:"model"`
	Severity        string  `json:"severity"`
	Score           float64 `json:"score"`
	PersonID        string  `json:"person_id"`
	PersonName      string  `json:"person_name"`
	InstitutionName string  `json:"institution_name"`
	FundAmount      float64 `json:"fund_amount"`
	Cursor          string  `json:"-"`
}

// Inbox is a page of an inbox with what it counts.
type Inbox struct {
	Rows     []InboxRow
	Next     string           // the cursor of the next page, "" at the end
	ByStatus map[string]int64 // leads per status under the other filters
	Matching int64            // leads the whole query matches
}

// InboxPage lists the leads u may see under q, a page at a time, with the
// counts per status that the tabs show and how many rows match, from the
// leads in memory.
func (c *Casebook) InboxPage(ctx context.Context, u User, q InboxQuery) (Inbox, error) {
	in := Inbox{ByStatus: map[string]int64{}}
	match, err := c.inboxMatch(u, q)
	if err != nil {
		return in, err
	}
	if q.Status != "" {
		if err := checkStatus(q.Status); err != nil {
			return in, err
		}
	}
	before, after, err := inboxOrder(q)
	if err != nil {
		return in, err
	}
	limit, today := domain.PageLimit(q.Limit), c.today()
	page := make([]memLead, 0, min(limit, pageRoom))
	err = c.memoryView(ctx, func(mem *leadMemory) {
		leads := mem.leads
		for _, g := range mem.groups {
			if match(&g.proto, today) {
				in.ByStatus[g.proto.Status] += g.leads
			}
		}
		want := func(m *memLead) bool { return match(m, today) && (q.Status == "" || m.Status == q.Status) && after(m) }
		var top []int32 // positions in leads
		if q.Sort == SortID || q.Sort == "" {
			// The page is the first matches from the cursor.
			mem.each(cityOf(u, q.City), after, func(i int32) bool {
				if want(&leads[i]) {
					top = append(top, i)
				}
				return len(top) < limit
			})
		} else {
			mem.each(cityOf(u, q.City), nil, func(i int32) bool {
				if want(&leads[i]) {
					top = topK(top, leads, i, limit, before)
				}
				return true
			})
		}
		for _, i := range top {
			page = append(page, leads[i])
		}
	})
	if err != nil {
		return in, err
	}
	for st, n := range in.ByStatus {
		if q.Status == "" || st == q.Status {
			in.Matching += n
		}
	}
	for i := range page {
		in.Rows = append(in.Rows, c.inboxRow(u, q, &page[i], today))
	}
	if len(in.Rows) == limit {
		in.Next = in.Rows[len(in.Rows)-1].Cursor
	}
	return in, c.auditView(ctx, u, "leads?"+q.describe(), len(in.Rows))
}

// topK inserts the lead at position m into top (positions in leads), kept
// sorted by before and at most k long.
func topK(top []int32, leads []memLead, m int32, k int, before func(a, b *memLead) bool) []int32 {
	if len(top) == k && !before(&leads[m], &leads[top[k-1]]) {
		return top
	}
	i := sort.Search(len(top), func(i int) bool { return before(&leads[m], &leads[top[i]]) })
	if len(top) < k {
		top = append(top, 0)
	}
	copy(top[i+1:], top[i:])
	top[i] = m
	return top
}

func (c *Casebook) inboxRow(u User, q InboxQuery, m *memLead, today string) InboxRow {
	r := InboxRow{Lead: m.lead(today), Model: m.model, Severity: m.severity, Score: m.score, PersonID: m.personID,
		PersonName: m.personName, InstitutionName: m.institutionName, FundAmount: float64(m.fundCents) / 100}
	if u.MasksPersonalData() {
		cl := Clue{PersonID: r.PersonID, PersonName: r.PersonName}
		cl.Mask()
		r.PersonID, r.PersonName = cl.PersonID, cl.PersonName
	}
	r.Cursor = rowCursor(q.Sort, r)
	return r
}

// inboxMatch is the condition of the leads u may see under q's filters,
// the status aside (the tabs count every status).
func (c *Casebook) inboxMatch(u User, q InboxQuery) (func(m *memLead, today string) bool, error) {
	if u.Role != RoleCity && u.Role != RoleProvince {
		return nil, domain.Errorf(domain.EFORBIDDEN, "leads are the city bureaus' and the province's")
	}
	if q.Severity != "" && q.Severity != "high" && q.Severity != "medium" && q.Severity != "low" {
		return nil, domain.Errorf(domain.EINVALID, "severity is high, medium or low, not %q", q.Severity)
	}
	city := cityOf(u, q.City)
	return func(m *memLead, today string) bool {
		return (city == "" || m.City == city) && (q.Model == "" || m.model == q.Model) &&
			(q.Severity == "" || m.severity == q.Severity) && (!q.Overdue || m.overdue(today))
	}, nil
}

// inboxOrder is a sort's order and the condition that starts a page after
// its cursor (the last row's sort key and lead id).
func inboxOrder(q InboxQuery) (before func(a, b *memLead) bool, after func(m *memLead) bool, err error) {
	var key, id string
	bad := domain.Errorf(domain.EINVALID, "cursor %q is not one of this list's", q.Cursor)
	if q.Cursor != "" {
		var ok bool
		if key, id, ok = strings.Cut(q.Cursor, "_"); !ok && q.Sort != SortID && q.Sort != "" {
			return nil, nil, bad
		}
		if !ok {
			id = key
		}
	}
	leadID, idErr := strconv.ParseInt(id, 10, 64)
	if q.Cursor != "" && idErr != nil {
		return nil, nil, bad
	}
	all := func(*memLead) bool { return true }
	switch q.Sort {
	case SortID, "":
		before = func(a, b *memLead) bool { return a.ID < b.ID }
		after = func(m *memLead) bool { return m.ID > leadID }
	case SortDue:
		before = func(a, b *memLead) bool { return a.DueDate < b.DueDate || (a.DueDate == b.DueDate && a.ID < b.ID) }
		if _, err := time.Parse("2006-01-02", key); q.Cursor != "" && err != nil {
			return nil, nil, bad
		}
		after = func(m *memLead) bool { return m.DueDate > key || (m.DueDate == key && m.ID > leadID) }
	case SortScore:
		before = func(a, b *memLead) bool { return a.score > b.score || (a.score == b.score && a.ID < b.ID) }
		score, err := strconv.ParseFloat(key, 64)
		if q.Cursor != "" && err != nil {
			return nil, nil, bad
		}
		after = func(m *memLead) bool { return m.score < score || (m.score == score && m.ID > leadID) }
	default:
		return nil, nil, domain.Errorf(domain.EINVALID, "sort is id, due or score, not %q", q.Sort)
	}
	if q.Cursor == "" {
		after = all
	}
	return before, after, nil
}

// rowCursor is the cursor a row ends a page with.
func rowCursor(sort string, r InboxRow) string {
	switch sort {
	case SortDue:
		return r.DueDate + "_" + strconv.FormatInt(r.ID, 10)
	case SortScore:
		return strconv.FormatFloat(r.Score, 'g', -1, 64) + "_" + strconv.FormatInt(r.ID, 10)
	}
	return strconv.FormatInt(r.ID, 10)
}

func (q InboxQuery) describe() string {
	var parts []string
	for _, kv := range [][2]string{{"city", q.City}, {"status", q.Status}, {"model", q.Model}, {"severity", q.Severity},
		{"sort", q.Sort}, {"cursor", q.Cursor}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if q.Overdue {
		parts = append(parts, "overdue=true")
	}
	return strings.Join(parts, "&")
}

// PoliceRecord is one police record of a lead's person near its visits:
// a hotel, rail, flight, custody or abroad record, a floating registration,
// the civil status or the household registration.
type PoliceRecord struct {
	Kind   string     `json:"kind"` // hotel | rail | flight | custody | abroad | floating | civil_status | hukou
	Start  *time.Time `json:"start,omitempty"`
	End    *time.Time `json:"end,omitempty"`
	Place  string     `json:"place"`
	Detail string     `json:"detail"`
	Source string     `json:"source"` // the record's id or feed
}

// LeadRecords returns the police records of a lead's person: every
// location record from 30 days before its first visit to 30 days after its
// last, and the person's civil status, household registration and floating
// registrations. The lead is read with Lead's scope (another city's is not
// found).
func (c *Casebook) LeadRecords(ctx context.Context, u User, id int64) ([]PoliceRecord, error) {
	l, err := c.lead(ctx, u, id, true)
	if err != nil {
		return nil, err
	}
	cl := l.Clue
	if cl == nil || cl.FirstVisit == nil {
		return nil, nil
	}
	from, to := cl.FirstVisit.AddDate(0, 0, -30), cl.LastVisit.AddDate(0, 0, 30)
	rows, err := c.DB.QueryContext(ctx, `SELECT kind, start_time, end_time, place, detail, source FROM (
		SELECT l.kind, l.start_time, l.end_time,
		       coalesce(coalesce(nullif(g.city, '市辖区'), g.province, '') || g.name, l.region_code, '境外') AS place,
		       '' AS detail, l.event_id AS source
		FROM feeds.locations l LEFT JOIN feeds.regions g ON g.code = l.region_code
		WHERE l.person_id = ? AND l.start_time <= CAST(? AS TIMESTAMP) AND coalesce(l.end_time, l.start_time) >= CAST(? AS TIMESTAMP)
		UNION ALL
		SELECT 'floating', CAST(f.valid_from AS TIMESTAMP), CAST(f.valid_to AS TIMESTAMP),
		       coalesce(coalesce(nullif(g.city, '市辖区'), g.province, '') || g.name, f.region_code), '', '流动人口登记'
		FROM feeds.floating f LEFT JOIN feeds.regions g ON g.code = f.region_code WHERE f.person_id = ?
		UNION ALL
		SELECT 'civil_status', CAST(coalesce(s.death_date, s.updated_at) AS TIMESTAMP), NULL, '', s.status, '公安生存状态'
		FROM feeds.civil_status s WHERE s.person_id = ?
		UNION ALL
		SELECT 'hukou', NULL, NULL, coalesce(coalesce(nullif(g.city, '市辖区'), g.province, '') || g.name, r.hukou_region), '', '户籍'
		FROM feeds.residents r LEFT JOIN feeds.regions g ON g.code = r.hukou_region WHERE r.person_id = ?
	) ORDER BY start_time NULLS FIRST, kind`, cl.PersonID, domain.DBTime(to), domain.DBTime(from), cl.PersonID, cl.PersonID, cl.PersonID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []PoliceRecord{}
	for rows.Next() {
		var r PoliceRecord
		if err := rows.Scan(&r.Kind, &r.Start, &r.End, &r.Place, &r.Detail, &r.Source); err != nil {
			return nil, err
		}
		r.Start, r.End = domain.WallPtr(r.Start), domain.WallPtr(r.End)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, c.auditView(ctx, u, fmt.Sprintf("lead %d police records", id), len(out))
}

// Breakdown is a batch's clues counted one way.
type Breakdown struct {
	Key        string  `json:"key"`
	Clues      int64   `json:"clues"`
	Settlement int64   `json:"settlements"`
	FundAmount float64 `json:"fund_amount"`
}

// BatchBreakdowns counts a batch's clues u may see by model, by severity
// and by city, from the groups of the leads in memory.
func (c *Casebook) BatchBreakdowns(ctx context.Context, u User, id int64) (byModel, bySeverity, byCity []Breakdown, err error) {
	if _, err = c.Batch(ctx, u, id); err != nil {
		return
	}
	match, err := clueMatch(u, ClueFilter{Batch: id}, c.today())
	if err != nil {
		return
	}
	type sum struct{ clues, settlements, cents int64 }
	counts := [3]map[string]*sum{{}, {}, {}}
	err = c.groupsView(ctx, func(gs groups) {
		for _, g := range gs {
			m := &g.proto
			if m.batch != id || !match(m) {
				continue
			}
			for k, key := range [3]string{m.model, m.severity, m.City} {
				s := counts[k][key]
				if s == nil {
					s = &sum{}
					counts[k][key] = s
				}
				s.clues, s.settlements, s.cents = s.clues+g.leads, s.settlements+g.settlements, s.cents+g.fundCents
			}
		}
	})
	out := [3][]Breakdown{{}, {}, {}}
	for k := range counts {
		for key, s := range counts[k] {
			out[k] = append(out[k], Breakdown{Key: key, Clues: s.clues, Settlement: s.settlements, FundAmount: float64(s.cents) / 100})
		}
		sort.Slice(out[k], func(i, j int) bool {
			a, b := out[k][i], out[k][j]
			return a.Clues > b.Clues || (a.Clues == b.Clues && a.Key < b.Key)
		})
	}
	return out[0], out[1], out[2], err
}

// VersionStat is how a model version's clues fared.
type VersionStat struct {
	Model, Version               string
	FirstUsed                    time.Time
	Issued, Confirmed, Dismissed int64
	Precision                    *float64
}

// VersionStats counts, per model version in the order they were first
// used, the clues issued and how the investigated ones closed.
func (c *Casebook) VersionStats(ctx context.Context, u User) ([]VersionStat, error) {
	if u.Role != RoleProvince && u.Role != RoleModeler && u.Role != RoleAdmin {
		return nil, domain.Errorf(domain.EFORBIDDEN, "model figures are the province's and the modelers'")
	}
	rows, err := c.DB.QueryContext(ctx, `SELECT c.model, c.model_version, coalesce(min(v.first_used), min(b.published_at)), count(*),
			count(*) FILTER (WHERE l.outcome = 'confirmed'), count(*) FILTER (WHERE l.outcome = 'dismissed')
		FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id JOIN casebook.batches b ON b.batch_id = c.batch_id
		LEFT JOIN casebook.model_versions v ON v.version = c.model_version
		GROUP BY c.model, c.model_version ORDER BY c.model, 3`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []VersionStat
	for rows.Next() {
		var v VersionStat
		if err := rows.Scan(&v.Model, &v.Version, &v.FirstUsed, &v.Issued, &v.Confirmed, &v.Dismissed); err != nil {
			return nil, err
		}
		v.FirstUsed = domain.Wall(v.FirstUsed)
		if v.Confirmed+v.Dismissed > 0 {
			p := float64(v.Confirmed) / float64(v.Confirmed+v.Dismissed)
			v.Precision = &p
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
