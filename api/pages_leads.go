// The lead pages: a city bureau's inbox and its leads, the province's view
// of every lead, the overdue list (督办) and the returned leads to reassign.
package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/domain"
	"collider/regions"
)

type tab struct {
	Status, Label string
	Count         int64
	Active        bool
}

type option struct{ Code, Name string }
type modelOption struct{ Name, Title string }

// pager is what the pager partial needs.
type pager struct {
	Query        url.Values
	Next, Cursor string
}

// leadsView is an inbox page.
type leadsView struct {
	Heading, Path                       string
	Inbox                               casebook.Inbox
	Query                               url.Values
	Tabs                                []tab
	Models                              []modelOption
	Cities, ReassignCities              []option
	Severities                          []string
	Status, Model, Severity, Sort, City string
	Overdue, OverdueOnly, Reassign      bool
	Pager                               pager
	titles                              map[string]string
}

// ModelTitle is a model's Chinese title.
func (v leadsView) ModelTitle(name string) string { return titleOf(v.titles, name) }

func titleOf(titles map[string]string, name string) string {
	if t, ok := titles[name]; ok {
		return t
	}
	return name
}

// modelTitles are the live models' titles.
func (s *Server) modelTitles() map[string]string {
	out := map[string]string{}
	if s.Models.Catalog != nil {
		for _, m := range s.Models.Catalog.Models() {
			out[m.Name] = m.Title
		}
	}
	return out
}

func (s *Server) modelOptions() []modelOption {
	var out []modelOption
	if s.Models.Catalog != nil {
		for _, m := range s.Models.Catalog.Models() {
			out = append(out, modelOption{m.Name, m.Title})
		}
	}
	return out
}

// cityOptions are the cities of the shipped regions, the province's first.
func cityOptions() []option {
	var out []option
	if t, err := regions.Shipped(); err == nil {
		for _, r := range t.All() {
			if r.Level == "city" && r.Name != "市辖区" && r.Name != "县" {
				out = append(out, option{r.Code, r.Name})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// provinceCities are the cities that have leads, for the filters.
func (s *Server) leadCities(c echo.Context) []option {
	ms, err := s.Casebook.Metrics(c.Request().Context(), user(c), "city")
	if err != nil {
		return nil
	}
	out := make([]option, 0, len(ms))
	for _, m := range ms {
		out = append(out, option{m.City, cityName(m.City)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// inboxQuery reads an inbox's filters from the URL.
func inboxQuery(c echo.Context) (casebook.InboxQuery, url.Values) {
	q := casebook.InboxQuery{Status: c.QueryParam("status"), Model: c.QueryParam("model"), Severity: c.QueryParam("severity"),
		Sort: c.QueryParam("sort"), Cursor: c.QueryParam("cursor"), City: c.QueryParam("city"), Overdue: c.QueryParam("overdue") == "true", Limit: 50}
	if q.Sort == "" {
		q.Sort = casebook.SortID
	}
	keep := url.Values{}
	for _, k := range []string{"status", "model", "severity", "sort", "city", "overdue"} {
		if v := c.QueryParam(k); v != "" {
			keep.Set(k, v)
		}
	}
	return q, keep
}

func (s *Server) leadsPage(c echo.Context) error {
	q, keep := inboxQuery(c)
	return s.inbox(c, q, keep, leadsView{Heading: map[bool]string{true: "线索收件箱", false: "全部线索"}[user(c).Role == casebook.RoleCity], Path: "/leads"})
}

func (s *Server) overduePage(c echo.Context) error {
	q, keep := inboxQuery(c)
	q.Overdue = true
	if q.Sort == casebook.SortID && c.QueryParam("sort") == "" {
		q.Sort = casebook.SortDue
		keep.Set("sort", casebook.SortDue)
	}
	keep.Set("overdue", "true")
	return s.inbox(c, q, keep, leadsView{Heading: "逾期督办", Path: "/overdue", OverdueOnly: true})
}

func (s *Server) returnedPage(c echo.Context) error {
	q, keep := inboxQuery(c)
	q.Status = casebook.StatusReturned
	keep.Set("status", casebook.StatusReturned)
	return s.inbox(c, q, keep, leadsView{Heading: "退回改派", Path: "/returned", Reassign: true, ReassignCities: cityOptions()})
}

func (s *Server) inbox(c echo.Context, q casebook.InboxQuery, keep url.Values, v leadsView) error {
	in, err := s.Casebook.InboxPage(c.Request().Context(), user(c), q)
	if err != nil {
		return err
	}
	v.Inbox, v.Query, v.titles = in, keep, s.modelTitles()
	v.Status, v.Model, v.Severity, v.Sort, v.City, v.Overdue = q.Status, q.Model, q.Severity, q.Sort, q.City, q.Overdue
	v.Severities, v.Models = []string{"high", "medium", "low"}, s.modelOptions()
	if user(c).Role == casebook.RoleProvince {
		v.Cities = s.leadCities(c)
	}
	statuses := []string{"", casebook.StatusNew, casebook.StatusAccepted, casebook.StatusInvestigating, casebook.StatusReturned, casebook.StatusClosed}
	if v.Reassign {
		statuses = []string{casebook.StatusReturned}
	}
	var all int64
	for _, n := range in.ByStatus {
		all += n
	}
	for _, st := range statuses {
		t := tab{Status: st, Label: label(statusNames, st), Count: in.ByStatus[st], Active: st == q.Status}
		if st == "" {
			t.Label, t.Count = "全部", all
		}
		v.Tabs = append(v.Tabs, t)
	}
	v.Pager = pager{Query: keep, Next: in.Next, Cursor: q.Cursor}
	return s.render(c, http.StatusOK, "leads", v.Heading, v)
}

// leadsExport downloads the clues of an inbox's filters, as the API's
// export does (the casebook audits it).
func (s *Server) leadsExport(c echo.Context) error {
	f := casebook.ClueFilter{Model: c.QueryParam("model"), Severity: c.QueryParam("severity"), Status: c.QueryParam("status"),
		City: c.QueryParam("city"), Overdue: c.QueryParam("overdue") == "true"}
	return s.export(c, f, "leads")
}

// evidenceItem is one settlement of a clue's evidence list.
type evidenceItem struct {
	N            int             `json:"n"`
	SettlementID string          `json:"settlement_id"`
	Reason       string          `json:"reason"`
	VisitType    string          `json:"visit_type"`
	VisitStart   *time.Time      `json:"-"`
	VisitEnd     *time.Time      `json:"-"`
	TotalAmount  float64         `json:"total_amount"`
	FundAmount   float64         `json:"fund_amount"`
	Evidence     json.RawMessage `json:"evidence"`
	Facts        []fact          `json:"-"`
}

type fact struct{ Key, Value string }

// evidenceItems reads a clue's evidence list into rows with readable facts.
func evidenceItems(raw json.RawMessage) []evidenceItem {
	var items []struct {
		evidenceItem
		Start string `json:"visit_start"`
		End   string `json:"visit_end"`
	}
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]evidenceItem, len(items))
	for i, it := range items {
		e := it.evidenceItem
		e.VisitStart, e.VisitEnd = parseWall(it.Start), parseWall(it.End)
		var facts map[string]any
		if json.Unmarshal(e.Evidence, &facts) == nil {
			keys := make([]string, 0, len(facts))
			for k := range facts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				e.Facts = append(e.Facts, fact{k, factText(facts[k])})
			}
		}
		out[i] = e
	}
	return out
}

// parseWall reads a time of the evidence (China wall clock, as stored).
func parseWall(s string) *time.Time {
	if s == "" {
		return nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, domain.ChinaTime); err == nil {
			return &t
		}
	}
	return nil
}

// factText writes an evidence value for reading: nested objects as
// key: value pairs, numbers without trailing zeros.
func factText(v any) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		if x {
			return "有"
		}
		return "无"
	case string:
		return x
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = label(evidenceNames, k) + "：" + factText(x[k])
		}
		return strings.Join(parts, "；")
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = factText(e)
		}
		return strings.Join(parts, "，")
	}
	return fmt.Sprint(v)
}

// formState keeps what a person typed into one form and what was wrong.
type formState struct {
	Values map[string]string
	Errors map[string]string
}

// forms are a page's forms by name.
type forms map[string]*formState

func (f forms) Value(form, field string) string {
	if s, ok := f[form]; ok {
		return s.Values[field]
	}
	return ""
}

func (f forms) Error(form, field string) string {
	if s, ok := f[form]; ok {
		return s.Errors[field]
	}
	return ""
}

// leadView is the lead page.
type leadView struct {
	forms
	Lead       casebook.Lead
	Clue       *casebook.Clue
	Items      []evidenceItem
	Records    []casebook.PoliceRecord
	Timeline   string
	Events     []casebook.Event
	Can        map[string]bool
	ModelTitle string
	Outcomes   []string
	Printed    time.Time
	reasons    func(string) string
}

// ReasonLabel is a reason code's Chinese label.
func (v leadView) ReasonLabel(code string) string { return v.reasons(code) }

// canDo are the actions a city bureau may take on a lead in its status.
func canDo(u casebook.User, l casebook.Lead) map[string]bool {
	if u.Role != casebook.RoleCity || u.City != l.City {
		return nil
	}
	switch l.Status {
	case casebook.StatusNew:
		return map[string]bool{"accept": true, "return": true}
	case casebook.StatusAccepted:
		return map[string]bool{"investigate": true, "return": true}
	case casebook.StatusInvestigating:
		return map[string]bool{"close": true}
	}
	return nil
}

func (s *Server) leadPage(c echo.Context) error {
	return s.showLead(c, http.StatusOK, nil)
}

func (s *Server) showLead(c echo.Context, status int, fs forms) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx, u := c.Request().Context(), user(c)
	l, err := s.Casebook.Lead(ctx, u, id)
	if err != nil {
		return err
	}
	events, err := s.Casebook.Events(ctx, u, id)
	if err != nil {
		return err
	}
	records, err := s.Casebook.LeadRecords(ctx, u, id)
	if err != nil {
		return err
	}
	v := leadView{forms: fs, Lead: l, Clue: l.Clue, Records: records, Events: events, Can: canDo(u, l),
		Outcomes: []string{casebook.OutcomeConfirmed, casebook.OutcomeDismissed, casebook.OutcomeReferred}, Printed: time.Now(),
		reasons: func(code string) string { return code }}
	if v.forms == nil {
		v.forms = forms{}
	}
	if l.Clue != nil {
		v.Items = evidenceItems(l.Clue.Evidence)
		v.Timeline = leadTimeline(v.Items, records)
		v.ModelTitle = titleOf(s.modelTitles(), l.Clue.Model)
		if s.Models.Catalog != nil {
			if m, err := s.Models.Catalog.Model(l.Clue.Model); err == nil {
				v.reasons = m.ReasonLabel
			}
		}
	}
	return s.render(c, status, "lead", fmt.Sprintf("线索 #%d", id), v)
}

// leadAct takes an action from the lead page's forms. The form is checked
// here, field by field, so that a mistake is shown beside its field with
// what was typed; the casebook checks again and decides.
func (s *Server) leadAct(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	action := c.FormValue("action")
	st := &formState{Values: map[string]string{"note": c.FormValue("note"), "outcome": c.FormValue("outcome"),
		"recovered_amount": c.FormValue("recovered_amount")}, Errors: map[string]string{}}
	a := casebook.Action{Action: action, Note: strings.TrimSpace(st.Values["note"]), Outcome: st.Values["outcome"]}
	switch action {
	case casebook.ActionClose:
		if a.Outcome == "" {
			st.Errors["outcome"] = "请选择核查结论。"
		}
		if a.Note == "" {
			st.Errors["note"] = "请填写核查情况。"
		}
		if raw := strings.TrimSpace(strings.ReplaceAll(st.Values["recovered_amount"], ",", "")); raw != "" {
			amount, err := strconv.ParseFloat(raw, 64)
			if err != nil || amount < 0 {
				st.Errors["recovered_amount"] = "请填写不小于 0 的金额，如 1234.56。"
			} else {
				a.RecoveredAmount = &amount
			}
		} else if a.Outcome == casebook.OutcomeConfirmed {
			st.Errors["recovered_amount"] = "结论为属实时须填写追回金额（没有追回填 0）。"
		}
	case casebook.ActionReturn:
		if a.Note == "" {
			st.Errors["note"] = "请填写退回理由。"
		}
	case casebook.ActionAccept, casebook.ActionInvestigate:
	default:
		return domain.Errorf(domain.EINVALID, "unknown action %q", action)
	}
	if len(st.Errors) == 0 {
		_, err := s.Casebook.Act(c.Request().Context(), user(c), id, a)
		if err == nil {
			return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/leads/%d", id))
		}
		if code := domain.ErrorCode(err); code != domain.EINVALID && code != domain.ECONFLICT {
			return err
		}
		st.Errors[""] = domain.ErrorMessage(err)
	}
	return s.showLead(c, http.StatusBadRequest, forms{action: st})
}

// reassign gives a returned lead to a city.
func (s *Server) reassign(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	city := c.FormValue("city_code")
	if city == "" {
		return domain.Errorf(domain.EINVALID, "请选择改派的市州")
	}
	if _, err := s.Casebook.Act(c.Request().Context(), user(c), id, casebook.Action{Action: casebook.ActionReassign, City: city,
		Note: strings.TrimSpace(c.FormValue("note"))}); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/returned")
}
