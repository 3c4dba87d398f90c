package casebook

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"collider/domain"
	"collider/personid"
)

// Clue is one published clue (线索): a (model, person, institution) and the
// settlements that make it suspicious.
type Clue struct {
	ID              int64           `json:"clue_id"`
	BatchID         int64           `json:"batch_id"`
	Model           string          `json:"model"`
	ModelVersion    string          `json:"model_version"`
	Severity        string          `json:"severity"`
	Score           float64         `json:"score"`
	Reasons         []string        `json:"reasons"`
	PersonID        string          `json:"person_id"`
	PersonName      string          `json:"person_name"`
	InstitutionID   string          `json:"institution_id"`
	InstitutionName string          `json:"institution_name"`
	City            string          `json:"city_code"`
	SettlementCount int             `json:"settlement_count"`
	SettlementIDs   []string        `json:"settlement_ids"`
	FirstVisit      *time.Time      `json:"first_visit,omitempty"`
	LastVisit       *time.Time      `json:"last_visit,omitempty"`
	TotalAmount     float64         `json:"total_amount"`
	FundAmount      float64         `json:"fund_amount"`
	Narrative       string          `json:"narrative"`
	Evidence        json.RawMessage `json:"evidence"`
	FollowUpOf      *int64          `json:"follow_up_of,omitempty"`
	Status          string          `json:"status,omitempty"` // the lead's status

	// encoded is Evidence when it was made as encoding/json writes it (the
	// clues of memory and the read cache): AppendJSON copies it without
	// checking it again. Evidence set to anything else is checked.
	encoded json.RawMessage
}

// setEncodedEvidence sets evidence already as encoding/json writes it.
func (cl *Clue) setEncodedEvidence(evidence json.RawMessage) {
	cl.Evidence, cl.encoded = evidence, evidence
}

// Mask hides personal data for readers who may not see it, in every field
// that carries it, the narrative and evidence included.
func (cl *Clue) Mask() {
	id, name := cl.PersonID, cl.PersonName
	cl.Narrative = personid.MaskText(cl.Narrative, id, name)
	cl.Evidence = json.RawMessage(personid.MaskText(string(cl.Evidence), id, name))
	cl.PersonID, cl.PersonName = personid.Mask(id), personid.MaskName(name)
}

// ClueFilter narrows a clue list. Cursor paging: clue ids greater than After.
type ClueFilter struct {
	Batch    int64
	Model    string
	City     string
	Severity string
	Status   string // the lead's status
	Overdue  bool   // leads past their due date and not closed
	After    int64
	Limit    int    // 0: a page of 100; Export lifts it
	today    string // the casebook's clock, for Overdue
}

const clueColumns = `c.clue_id, c.batch_id, c.model, c.model_version, c.severity, c.score, c.reasons, c.person_id,
	coalesce(c.person_name, ''), c.institution_id, coalesce(c.institution_name, ''), l.city_code, c.settlement_count,
	c.settlement_ids, c.first_visit, c.last_visit, CAST(c.total_amount AS DOUBLE), CAST(c.fund_amount AS DOUBLE),
	c.narrative, c.evidence, c.follow_up_of, l.status`

func scanClue(s interface{ Scan(...any) error }, cl *Clue) error {
	var reasons, ids, evidence string
	var first, last sql.NullTime
	var follow sql.NullInt64
	if err := s.Scan(&cl.ID, &cl.BatchID, &cl.Model, &cl.ModelVersion, &cl.Severity, &cl.Score, &reasons, &cl.PersonID,
		&cl.PersonName, &cl.InstitutionID, &cl.InstitutionName, &cl.City, &cl.SettlementCount, &ids, &first, &last,
		&cl.TotalAmount, &cl.FundAmount, &cl.Narrative, &evidence, &follow, &cl.Status); err != nil {
		return err
	}
	cl.Reasons, cl.SettlementIDs = splitList(reasons), splitList(ids)
	cl.Evidence = json.RawMessage(evidence)
	if first.Valid {
		cl.FirstVisit = domain.WallPtr(&first.Time)
	}
	if last.Valid {
		cl.LastVisit = domain.WallPtr(&last.Time)
	}
	if follow.Valid {
		cl.FollowUpOf = &follow.Int64
	}
	return nil
}

func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ";")
}

// clueScope is the WHERE clause and arguments that limit clues to what u may
// see and the filter asks for. Every clue query, counts and exports
// included, goes through it: one scope check for every handler.
func clueScope(u User, f ClueFilter) (string, []any, error) {
	where := []string{"true"}
	var args []any
	switch u.Role {
	case RoleCity:
		if f.City != "" && f.City != u.City {
			return "", nil, domain.Errorf(domain.EFORBIDDEN, "a city bureau sees only its own city's clues")
		}
		where = append(where, "l.city_code = ?")
		args = append(args, u.City)
	case RoleProvince, RoleModeler, RoleAdmin:
		if f.City != "" {
			where = append(where, "l.city_code = ?")
			args = append(args, f.City)
		}
	default:
		return "", nil, domain.Errorf(domain.EFORBIDDEN, "unknown role")
	}
	if f.Batch > 0 {
		where = append(where, "c.batch_id = ?")
		args = append(args, f.Batch)
	}
	if f.Model != "" {
		where = append(where, "c.model = ?")
		args = append(args, f.Model)
	}
	if f.Severity != "" {
		if f.Severity != "high" && f.Severity != "medium" && f.Severity != "low" {
			return "", nil, domain.Errorf(domain.EINVALID, "severity is high, medium or low")
		}
		where = append(where, "c.severity = ?")
		args = append(args, f.Severity)
	}
	if f.Status != "" {
		if err := checkStatus(f.Status); err != nil {
			return "", nil, err
		}
		where = append(where, "l.status = ?")
		args = append(args, f.Status)
	}
	if f.Overdue {
		where = append(where, "l.status <> 'closed' AND l.due_date < CAST(? AS DATE)")
		args = append(args, f.today)
	}
	if f.After > 0 {
		where = append(where, "c.clue_id > ?")
		args = append(args, f.After)
	}
	return strings.Join(where, " AND "), args, nil
}

// clueMatch is clueScope over the leads in memory: the same refusals,
// the same clues (a test holds the two together).
func clueMatch(u User, f ClueFilter, today string) (func(m *memLead) bool, error) {
	if _, _, err := clueScope(u, f); err != nil {
		return nil, err
	}
	city := cityOf(u, f.City)
	return func(m *memLead) bool {
		return (city == "" || m.City == city) && (f.Batch <= 0 || m.batch == f.Batch) && (f.Model == "" || m.model == f.Model) &&
			(f.Severity == "" || m.severity == f.Severity) && (f.Status == "" || m.Status == f.Status) && (!f.Overdue || m.overdue(today))
	}, nil
}

// Clues lists the clues u may see, by id from the cursor, masked as u's role requires.
func (c *Casebook) Clues(ctx context.Context, u User, f ClueFilter) ([]Clue, error) {
	match, err := clueMatch(u, f, c.today())
	if err != nil {
		return nil, err
	}
	limit := domain.PageLimit(f.Limit)
	page := make([]memLead, 0, min(limit, pageRoom))
	err = c.memoryView(ctx, func(mem *leadMemory) {
		mem.each(cityOf(u, f.City), idAbove(f.After), func(i int32) bool {
			if match(&mem.leads[i]) {
				page = append(page, mem.leads[i])
			}
			return len(page) < limit
		})
	})
	if err != nil {
		return nil, err
	}
	out, err := c.cluesOf(ctx, page)
	if err != nil {
		return nil, err
	}
	if u.MasksPersonalData() {
		for i := range out {
			out[i].Mask()
		}
	}
	return out, c.auditView(ctx, u, "clues?"+f.describe(true), len(out))
}

// CountClues counts the clues u may see under a filter, from the groups
// of the leads in memory.
func (c *Casebook) CountClues(ctx context.Context, u User, f ClueFilter) (int64, error) {
	f.After = 0
	match, err := clueMatch(u, f, c.today())
	if err != nil {
		return 0, err
	}
	var n int64
	err = c.groupsView(ctx, func(gs groups) {
		for _, g := range gs {
			if match(&g.proto) {
				n += g.leads
			}
		}
	})
	return n, err
}

// Clue returns one clue u may see.
func (c *Casebook) Clue(ctx context.Context, u User, id int64) (Clue, error) {
	cl, err := c.clue(ctx, u, id)
	if err != nil {
		return cl, err
	}
	return cl, c.auditView(ctx, u, fmt.Sprintf("clue %d", id), 1)
}

func (c *Casebook) clue(ctx context.Context, u User, id int64) (Clue, error) {
	if _, _, err := clueScope(u, ClueFilter{}); err != nil {
		return Clue{}, err
	}
	m, ok, err := c.memLeadByID(ctx, id)
	if err != nil {
		return Clue{}, err
	}
	if !ok || !canSee(u, m.City) {
		return Clue{}, domain.Errorf(domain.ENOTFOUND, "no clue %d", id)
	}
	cl, err := c.clueOf(ctx, &m)
	if err != nil {
		return Clue{}, err
	}
	if u.MasksPersonalData() {
		cl.Mask()
	}
	return cl, nil
}

// clueTextColumns are what a clue's lead in memory does not keep.
const clueTextColumns = `c.clue_id, c.settlement_ids, c.narrative, c.evidence`

// clueOf is a lead's clue, unmasked, with the lead's city and status.
func (c *Casebook) clueOf(ctx context.Context, m *memLead) (Clue, error) {
	cls, err := c.cluesOf(ctx, []memLead{*m})
	if err != nil {
		return Clue{}, err
	}
	return cls[0], nil
}

// cluesOf are the leads' clues, unmasked, in their order: from the read
// cache, the others from memory and one query of what memory does not
// keep (a column read from DuckDB's compressed storage costs a point
// lookup more than the lookup itself). A clue never changes once
// published; its lead's city and status come from memory.
func (c *Casebook) cluesOf(ctx context.Context, ms []memLead) ([]Clue, error) {
	out := make([]Clue, len(ms))
	var missing []any
	at := map[int64]int{}
	for i := range ms {
		if v, ok := c.cache.get(cacheKey{'c', ms[i].ID}); ok {
			ids, narrative, evidence, err := v.(clueText).unpack()
			if err != nil {
				return nil, err
			}
			out[i] = *ms[i].clue(ids, narrative, evidence)
		} else {
			missing, at[ms[i].ID] = append(missing, ms[i].ID), i
		}
	}
	if len(missing) > 0 {
		var rows *sql.Rows
		var err error
		if len(missing) == 1 { // a lead page: a statement prepared once, half the cost
			rows, err = c.stmtQuery(ctx, "SELECT "+clueTextColumns+" FROM casebook.clues c WHERE c.clue_id = ?", missing...)
		} else {
			rows, err = c.DB.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM casebook.clues c WHERE c.clue_id IN (%s)", clueTextColumns,
				strings.TrimSuffix(strings.Repeat("?, ", len(missing)), ", ")), missing...)
		}
		if err != nil {
			return nil, err
		}
		lead := func(id int64) *memLead {
			if i, ok := at[id]; ok {
				return &ms[i]
			}
			return nil
		}
		if err := c.cacheClues(rows, lead, func(cl *Clue) bool { out[at[cl.ID]] = *cl; delete(at, cl.ID); return true }); err != nil {
			return nil, err
		}
		if len(at) > 0 {
			return nil, fmt.Errorf("casebook: %d leads without their clue", len(at))
		}
	}
	for i := range out {
		out[i].City, out[i].Status = ms[i].City, ms[i].Status
	}
	return out, nil
}

// cacheClues reads rows of clueTextColumns into the read cache, each with
// its lead (rows without one are skipped), handing each to seen until it
// says stop.
func (c *Casebook) cacheClues(rows *sql.Rows, lead func(id int64) *memLead, seen func(*Clue) bool) error {
	defer rows.Close()
	generation := c.cache.begin()
	for rows.Next() {
		var id int64
		var ids, narrative, evidence string
		if err := rows.Scan(&id, &ids, &narrative, &evidence); err != nil {
			return err
		}
		m := lead(id)
		if m == nil {
			continue
		}
		cl := m.clue(ids, narrative, appendJSONRaw(nil, json.RawMessage(evidence)))
		text := packText(ids, narrative, cl.Evidence)
		c.cachePut(cacheKey{'c', cl.ID}, text, int64(128+len(text)), generation)
		if !seen(cl) {
			break
		}
	}
	return rows.Err()
}

// WarmReadCache reads clues, newest first, into the read cache until it
// is full or every clue is in it: a server starts with the clues its
// first lead pages will show. It returns how many it read.
func (c *Casebook) WarmReadCache(ctx context.Context) (int, error) {
	max := c.ReadCacheBytes
	if max == 0 {
		max = DefaultReadCacheBytes
	}
	if max < 0 {
		return 0, nil
	}
	// The clues are put together with their leads: memory is loaded first
	// (loading it starts the cache afresh).
	if err := c.leadsView(ctx, func([]memLead) {}); err != nil {
		return 0, err
	}
	rows, err := c.DB.QueryContext(ctx, "SELECT "+clueTextColumns+" FROM casebook.clues c ORDER BY c.clue_id DESC")
	if err != nil {
		return 0, err
	}
	n := 0
	lead := func(id int64) *memLead {
		m, ok, err := c.memLeadByID(ctx, id)
		if !ok || err != nil {
			return nil
		}
		return &m
	}
	err = c.cacheClues(rows, lead, func(*Clue) bool {
		n++
		c.cache.mu.Lock()
		defer c.cache.mu.Unlock()
		return c.cache.size < max*9/10
	})
	return n, err
}
