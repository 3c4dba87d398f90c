package casebook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"collider/domain"
	"collider/regions"
)

// Lead statuses (线索状态).
const (
	StatusNew           = "new"           // 待签收
	StatusAccepted      = "accepted"      // 签收
	StatusInvestigating = "investigating" // 核查中
	StatusReturned      = "returned"      // 退回
	StatusClosed        = "closed"        // 办结
)

// Outcomes of a closed lead.
const (
	OutcomeConfirmed = "confirmed" // 属实
	OutcomeDismissed = "dismissed" // 排除
	OutcomeReferred  = "referred"  // 移送公安/纪检
)

// Actions on a lead, with the only transitions the workflow allows.
const (
	ActionAccept      = "accept"
	ActionInvestigate = "investigate"
	ActionClose       = "close"
	ActionReturn      = "return"
	ActionReassign    = "reassign"
)

// transitions: action → allowed from-statuses → to-status.
var transitions = map[string]struct {
	from []string
	to   string
}{
	ActionAccept:      {[]string{StatusNew}, StatusAccepted},
	ActionInvestigate: {[]string{StatusAccepted}, StatusInvestigating},
	ActionClose:       {[]string{StatusInvestigating}, StatusClosed},
	ActionReturn:      {[]string{StatusNew, StatusAccepted}, StatusReturned},
	ActionReassign:    {[]string{StatusReturned}, StatusNew},
}

// Lead is a routed clue and where it stands.
type Lead struct {
	ID              int64      `json:"lead_id"`
	City            string     `json:"city_code"`
	Status          string     `json:"status"`
	Outcome         string     `json:"outcome,omitempty"`
	RecoveredAmount *float64   `json:"recovered_amount,omitempty"`
	Note            string     `json:"note,omitempty"`
	RoutedAt        time.Time  `json:"routed_at"`
	DueDate         string     `json:"due_date"`
	UpdatedAt       time.Time  `json:"updated_at"`
	ClosedAt        *time.Time `json:"closed_at,omitempty"`
	Overdue         bool       `json:"overdue"`
	Clue            *Clue      `json:"clue,omitempty"`
}

// Event is one change of a lead.
type Event struct {
	ID              int64     `json:"event_id"`
	LeadID          int64     `json:"lead_id"`
	At              time.Time `json:"at"`
	UserID          int64     `json:"user_id"`
	UserName        string    `json:"user_name"`
	Role            string    `json:"role"`
	Action          string    `json:"action"`
	From            string    `json:"from_status,omitempty"`
	To              string    `json:"to_status"`
	City            string    `json:"city_code"`
	Outcome         string    `json:"outcome,omitempty"`
	RecoveredAmount *float64  `json:"recovered_amount,omitempty"`
	Note            string    `json:"note,omitempty"`
}

// Action is what a user asks to do to a lead.
type Action struct {
	Action          string   `json:"action"`
	Outcome         string   `json:"outcome,omitempty"`
	RecoveredAmount *float64 `json:"recovered_amount,omitempty"`
	Note            string   `json:"note,omitempty"`
	City            string   `json:"city_code,omitempty"` // reassign: the city it goes to
}

// shippedRegion finds a code exactly (no fallback) in the shipped regions table.
func shippedRegion(code string) (regions.Region, bool) {
	t, err := regions.Shipped()
	if err != nil {
		return regions.Region{}, false
	}
	r, ok := t.Lookup(code)
	return r, ok && r.Code == code
}

// checkStatus refuses a status filter the workflow does not have, rather
// than answering an empty list that looks like an empty inbox.
func checkStatus(s string) error {
	switch s {
	case StatusNew, StatusAccepted, StatusInvestigating, StatusReturned, StatusClosed:
		return nil
	}
	return domain.Errorf(domain.EINVALID, "status is new, accepted, investigating, returned or closed, not %q", s)
}

// IsProvinceCode reports whether a region code is a province (xx0000): leads
// routed there are the province's own.
func IsProvinceCode(code string) bool { return len(code) == 6 && code[2:] == "0000" }

// canSee reports whether u may see a lead held by city.
func canSee(u User, city string) bool {
	switch u.Role {
	case RoleProvince, RoleModeler, RoleAdmin:
		return true
	case RoleCity:
		return city == u.City
	}
	return false
}

// check validates an action against the lead and the user, without writing.
func checkAction(u User, l Lead, a Action) (to string, err error) {
	t, ok := transitions[a.Action]
	if !ok {
		return "", domain.Errorf(domain.EINVALID, "unknown action %q (actions: accept, investigate, close, return, reassign)", a.Action)
	}
	switch {
	case a.Action == ActionReassign:
		if u.Role != RoleProvince {
			return "", domain.Errorf(domain.EFORBIDDEN, "only the province reassigns leads")
		}
	case u.Role == RoleCity && l.City == u.City:
	case u.Role == RoleProvince && IsProvinceCode(l.City):
		// Leads no city could take are the province's own to work.
	default:
		return "", domain.Errorf(domain.EFORBIDDEN, "a %s user cannot %s lead %d held by %s", u.Role, a.Action, l.ID, l.City)
	}
	allowed := false
	for _, f := range t.from {
		allowed = allowed || f == l.Status
	}
	if !allowed {
		return "", domain.Errorf(domain.ECONFLICT, "lead %d is %s; %s is allowed only from %s", l.ID, l.Status, a.Action, strings.Join(t.from, " or "))
	}
	switch a.Action {
	case ActionClose:
		switch a.Outcome {
		case OutcomeConfirmed:
			// The column is DECIMAL(18,2): a larger amount would fail the write as a 500.
			if a.RecoveredAmount == nil || *a.RecoveredAmount < 0 || *a.RecoveredAmount >= 1e16 {
				return "", domain.Errorf(domain.EINVALID, "closing as confirmed needs recovered_amount (0 or more, under 10^16 yuan)")
			}
		case OutcomeDismissed, OutcomeReferred:
			if a.RecoveredAmount != nil && *a.RecoveredAmount != 0 {
				return "", domain.Errorf(domain.EINVALID, "recovered_amount goes with outcome confirmed only")
			}
		default:
			return "", domain.Errorf(domain.EINVALID, "closing needs an outcome: confirmed, dismissed or referred")
		}
		if strings.TrimSpace(a.Note) == "" {
			return "", domain.Errorf(domain.EINVALID, "closing needs a note")
		}
	case ActionReturn:
		if strings.TrimSpace(a.Note) == "" {
			return "", domain.Errorf(domain.EINVALID, "returning a lead needs a note saying why it is not yours")
		}
	case ActionReassign:
		if !regions.IsCode(a.City) || a.City[4:] != "00" || IsProvinceCode(a.City) {
			return "", domain.Errorf(domain.EINVALID, "reassign needs city_code, a 6-digit city code like 620100")
		}
		// A city that does not exist, or another province's, would strand
		// the lead where no bureau can act on it and the province no longer can.
		if r, ok := shippedRegion(a.City); !ok || r.Level != "city" || regions.ProvinceOf(a.City) != regions.ProvinceOf(l.City) {
			return "", domain.Errorf(domain.EINVALID, "reassign needs city_code, a city of province %s (%q is not one)", regions.ProvinceOf(l.City), a.City)
		}
	}
	if a.Action != ActionClose && (a.Outcome != "" || a.RecoveredAmount != nil) {
		return "", domain.Errorf(domain.EINVALID, "outcome and recovered_amount go with close only")
	}
	return t.to, nil
}

const leadColumns = `l.lead_id, l.city_code, l.status, coalesce(l.outcome, ''), CAST(l.recovered_amount AS DOUBLE),
	coalesce(l.note, ''), l.routed_at, strftime(l.due_date, '%Y-%m-%d'), l.updated_at, l.closed_at,
	l.status NOT IN ('closed') AND l.due_date < CAST(? AS DATE)`

func scanLead(s interface{ Scan(...any) error }, l *Lead) error {
	var rec sql.NullFloat64
	var closed sql.NullTime
	if err := s.Scan(&l.ID, &l.City, &l.Status, &l.Outcome, &rec, &l.Note, &l.RoutedAt, &l.DueDate, &l.UpdatedAt, &closed, &l.Overdue); err != nil {
		return err
	}
	if rec.Valid {
		l.RecoveredAmount = &rec.Float64
	}
	if closed.Valid {
		l.ClosedAt = domain.WallPtr(&closed.Time)
	}
	l.RoutedAt, l.UpdatedAt = domain.Wall(l.RoutedAt), domain.Wall(l.UpdatedAt)
	return nil
}

// Act applies an action to a lead in one transaction: the lead is updated and
// an event appended, or nothing happens.
func (c *Casebook) Act(ctx context.Context, u User, leadID int64, a Action) (Lead, error) {
	if err := c.act(ctx, u, leadID, a); err != nil {
		return Lead{}, err
	}
	// An acknowledged action means every view before it is in the audit
	// log; the action itself is committed, so a log that cannot take them
	// yet (a full disk) keeps them queued rather than fail the action. The
	// action's connection is back in the pool by now: the writer never
	// waits for a connection an action holds while it waits for the writer.
	c.flushAudit(ctx)
	// The actor saw the lead a moment ago; after a return it belongs to the
	// province, but the actor still gets the state they produced.
	return c.lead(ctx, u, leadID, false)
}

func (c *Casebook) act(ctx context.Context, u User, leadID int64, a Action) error {
	conn, err := c.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var l Lead
	now := c.now()
	err = scanLead(tx.QueryRowContext(ctx, "SELECT "+leadColumns+" FROM casebook.leads l WHERE l.lead_id = ?", domain.DBTime(now), leadID), &l)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !canSee(u, l.City)) {
		return domain.Errorf(domain.ENOTFOUND, "no lead %d", leadID)
	}
	if err != nil {
		return err
	}
	to, err := checkAction(u, l, a)
	if err != nil {
		return err
	}
	city := l.City
	if a.Action == ActionReassign {
		city = a.City
	}
	if a.Action == ActionReturn {
		// A returned lead goes back to the province, which reassigns it.
		city = regions.ProvinceOf(l.City)
	}
	var closedAt any
	if to == StatusClosed {
		closedAt = domain.DBTime(now)
	}
	note := strings.TrimSpace(a.Note)
	if _, err := tx.ExecContext(ctx, `UPDATE casebook.leads SET status = ?, city_code = ?, updated_at = ?,
		outcome = coalesce(?, outcome), recovered_amount = coalesce(?, recovered_amount), note = coalesce(?, note), closed_at = coalesce(?, closed_at)
		WHERE lead_id = ?`, to, city, domain.DBTime(now), nullString(a.Outcome), a.RecoveredAmount, nullString(note), closedAt, leadID); err != nil {
		return conflictOr(err)
	}
	e := Event{LeadID: leadID, At: dbTime(now), UserID: u.ID, UserName: u.Name, Role: string(u.Role), Action: a.Action,
		From: l.Status, To: to, City: city, Outcome: a.Outcome, Note: note}
	if err := tx.QueryRowContext(ctx, `INSERT INTO casebook.lead_events VALUES (nextval('casebook.event_ids'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		RETURNING event_id`, leadID, domain.DBTime(now), u.ID, u.Name, string(u.Role), a.Action, l.Status, to, city,
		nullString(a.Outcome), a.RecoveredAmount, nullString(note)).Scan(&e.ID); err != nil {
		return conflictOr(err)
	}
	err = c.commitLeads(tx, func(mem *leadMemory) { mem.applyAction(a, e) })
	if err != nil {
		return conflictOr(err)
	}
	return nil
}

// conflictOr turns DuckDB's write-write conflict (two people acting on one
// lead at once) into domain.ECONFLICT.
func conflictOr(err error) error {
	if strings.Contains(err.Error(), "Conflict") || strings.Contains(err.Error(), "conflict") {
		return domain.Errorf(domain.ECONFLICT, "the lead was changed by someone else at the same moment; reload and try again")
	}
	return err
}

// Lead returns one lead with its clue, if u may see it.
func (c *Casebook) Lead(ctx context.Context, u User, id int64) (Lead, error) {
	l, err := c.lead(ctx, u, id, true)
	if err != nil {
		return l, err
	}
	return l, c.auditView(ctx, u, fmt.Sprintf("lead %d", id), 1)
}

func (c *Casebook) lead(ctx context.Context, u User, id int64, scoped bool) (Lead, error) {
	m, ok, err := c.memLeadByID(ctx, id)
	if err != nil {
		return Lead{}, err
	}
	if !ok || (scoped && !canSee(u, m.City)) {
		return Lead{}, domain.Errorf(domain.ENOTFOUND, "no lead %d", id)
	}
	l := m.lead(c.today())
	clue, err := c.clueOf(ctx, &m)
	if err != nil {
		return Lead{}, err
	}
	if u.MasksPersonalData() {
		clue.Mask()
	}
	l.Clue = &clue
	return l, nil
}

// Events returns a lead's events, oldest first, from memory.
func (c *Casebook) Events(ctx context.Context, u User, leadID int64) ([]Event, error) {
	m, ok, err := c.memLeadByID(ctx, leadID)
	if err != nil {
		return nil, err
	}
	if !ok || !canSee(u, m.City) {
		return nil, domain.Errorf(domain.ENOTFOUND, "no lead %d", leadID)
	}
	// The events are the lead's: seeing them is seeing the lead. (An
	// action only appends past the length this copy holds.)
	return append([]Event(nil), m.events...), c.auditView(ctx, u, fmt.Sprintf("lead %d", leadID), 1)
}

// LeadFilter narrows a lead list.
type LeadFilter struct {
	City    string // province only; a city user always sees its own
	Status  string
	Overdue bool
	After   int64 // cursor: lead ids greater than this
	Limit   int
}

// pageRoom is the room a page of a list starts with: a default page of
// fifty grown from nothing allocated two and a half times its size, the
// most of what an inbox cost the collector.
const pageRoom = 64

// Leads lists leads u may see, by id, from a cursor, from memory.
func (c *Casebook) Leads(ctx context.Context, u User, f LeadFilter) ([]Lead, error) {
	if u.Role == RoleModeler {
		return nil, domain.Errorf(domain.EFORBIDDEN, "modelers work with clues and metrics, not lead inboxes")
	}
	if f.Status != "" {
		if err := checkStatus(f.Status); err != nil {
			return nil, err
		}
	}
	limit, today := domain.PageLimit(f.Limit), c.today()
	out := make([]Lead, 0, min(limit, pageRoom))
	err := c.memoryView(ctx, func(mem *leadMemory) {
		mem.each(cityOf(u, f.City), idAbove(f.After), func(i int32) bool {
			if m := &mem.leads[i]; (f.Status == "" || m.Status == f.Status) && (!f.Overdue || m.overdue(today)) {
				out = append(out, m.lead(today))
			}
			return len(out) < limit
		})
	})
	return out, err
}
