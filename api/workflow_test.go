// This file drives the lead workflow over HTTP: every allowed transition,
// every forbidden one at every status, and the events each leaves behind.
package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"collider/casebook"
)

// leadEvents reads a lead's events from the store, oldest first: every
// column, so that an overwritten event would show.
func (e *testEnv) leadEvents(t *testing.T, id int64) [][]any {
	t.Helper()
	rows, err := e.store.DB.Query(`SELECT event_id, lead_id, event_at, user_id, user_name, role, action, from_status, to_status,
		city_code, outcome, CAST(recovered_amount AS VARCHAR), note FROM casebook.lead_events WHERE lead_id = ? ORDER BY event_id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		row := make([]any, 13)
		ptrs := make([]any, len(row))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	return out
}

// act posts an action on a lead and checks the events: one more on
// success, with the earlier ones unchanged; none on a refusal.
func (e *testEnv) act(t *testing.T, as string, id int64, body string) response {
	t.Helper()
	before := e.leadEvents(t, id)
	r := e.do(t, as, http.MethodPost, fmt.Sprintf("/api/v1/leads/%d/events", id), body)
	after := e.leadEvents(t, id)
	switch {
	case r.status == http.StatusCreated && len(after) != len(before)+1:
		t.Errorf("%s %s: %d events → %d, want one more", as, body, len(before), len(after))
	case r.status != http.StatusCreated && len(after) != len(before):
		t.Errorf("refused %s %s: %d events → %d, want none added", as, body, len(before), len(after))
	}
	if len(after) >= len(before) && !reflect.DeepEqual(after[:len(before)], before) {
		t.Errorf("%s %s: earlier events changed:\n%v\n→\n%v", as, body, before, after[:len(before)])
	}
	if r.status >= 400 {
		if msg := checkErrorShape(r); msg != "" {
			t.Error(msg)
		}
	}
	return r
}

// The request bodies of every action, valid in themselves.
const (
	accept      = `{"action":"accept"}`
	investigate = `{"action":"investigate"}`
	confirm     = `{"action":"close","outcome":"confirmed","recovered_amount":356.2,"note":"冒用已死亡人员医保卡购药属实，已追回"}`
	dismiss     = `{"action":"close","outcome":"dismissed","note":"公安死亡日期登记有误，经核实本人在世"}`
	refer       = `{"action":"close","outcome":"referred","note":"涉嫌诈骗，已移送公安"}`
	giveBack    = `{"action":"return","note":"该机构不在本市辖区"}`
)

func reassignTo(city string) string { return `{"action":"reassign","city_code":"` + city + `"}` }

// everyAction is each action as the lead's holder would send it.
func everyAction(e *testEnv) map[string]string {
	return map[string]string{"accept": accept, "investigate": investigate, "close": confirm, "return": giveBack, "reassign": reassignTo(e.otherCity)}
}

// step is one action of a path through the workflow and where it leads.
type step struct {
	as, action, body string
	status, city     string // the lead after it
}

// Every allowed path through the workflow succeeds step by step; at every
// status on the way, every action the workflow does not allow from it is
// a 409 in the error shape and changes nothing.
func TestWorkflow_EveryTransitionAllowedOrConflict(t *testing.T) {
	e := getEnv(t)
	province := "620000"
	allowed := map[string][]string{ // status → the actions allowed from it
		casebook.StatusNew:           {"accept", "return"},
		casebook.StatusAccepted:      {"investigate", "return"},
		casebook.StatusInvestigating: {"close"},
		casebook.StatusReturned:      {"reassign"},
		casebook.StatusClosed:        nil,
	}
	for _, tc := range []struct {
		name   string
		city   string // where the lead starts
		path   []step
		record func(t *testing.T, l casebook.Lead) // checks the end state
	}{
		{"closed as confirmed", ownCity, []step{
			{asCityOwn, "accept", accept, "accepted", ownCity},
			{asCityOwn, "investigate", investigate, "investigating", ownCity},
			{asCityOwn, "close", confirm, "closed", ownCity},
		}, func(t *testing.T, l casebook.Lead) {
			if l.Outcome != "confirmed" || l.RecoveredAmount == nil || *l.RecoveredAmount != 356.2 || l.ClosedAt == nil || l.Note == "" {
				t.Errorf("closed lead %+v", l)
			}
		}},
		{"closed as dismissed", ownCity, []step{
			{asCityOwn, "accept", accept, "accepted", ownCity},
			{asCityOwn, "investigate", investigate, "investigating", ownCity},
			{asCityOwn, "close", dismiss, "closed", ownCity},
		}, func(t *testing.T, l casebook.Lead) {
			if l.Outcome != "dismissed" || l.RecoveredAmount != nil || l.ClosedAt == nil {
				t.Errorf("closed lead %+v", l)
			}
		}},
		{"closed as referred", ownCity, []step{
			{asCityOwn, "accept", accept, "accepted", ownCity},
			{asCityOwn, "investigate", investigate, "investigating", ownCity},
			{asCityOwn, "close", refer, "closed", ownCity},
		}, func(t *testing.T, l casebook.Lead) {
			if l.Outcome != "referred" || l.ClosedAt == nil {
				t.Errorf("closed lead %+v", l)
			}
		}},
		{"returned when new, reassigned to another city, worked there", ownCity, []step{
			{asCityOwn, "return", giveBack, "returned", province},
			{asProvince, "reassign", reassignTo(e.otherCity), "new", e.otherCity},
			{asCityOther, "accept", accept, "accepted", e.otherCity},
		}, nil},
		{"returned when accepted, reassigned back", e.otherCity, []step{
			{asCityOther, "accept", accept, "accepted", e.otherCity},
			{asCityOther, "return", giveBack, "returned", province},
			{asProvince, "reassign", reassignTo(ownCity), "new", ownCity},
			{asCityOwn, "accept", accept, "accepted", ownCity},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.leadsIn(t, tc.city, casebook.StatusNew, 1)[0]
			holder, status := map[string]string{ownCity: asCityOwn, e.otherCity: asCityOther}[tc.city], casebook.StatusNew
			var last casebook.Lead
			for i, st := range append(tc.path, step{}) {
				// Every action not allowed here, sent by whoever holds the lead.
				for action, body := range everyAction(e) {
					ok := false
					for _, a := range allowed[status] {
						ok = ok || a == action
					}
					if ok {
						continue
					}
					as := holder
					if action == "reassign" || status == casebook.StatusReturned {
						as = asProvince // only the province reassigns; it holds returned leads
					}
					if r := e.act(t, as, id, body); r.status != http.StatusConflict {
						t.Errorf("%s on a %s lead as %s: %s, want 409", action, status, as, r)
					}
				}
				if i == len(tc.path) {
					break
				}
				r := e.act(t, st.as, id, st.body)
				if r.status != http.StatusCreated {
					t.Fatalf("step %d: %s as %s on a %s lead: %s", i+1, st.action, st.as, status, r)
				}
				if err := json.Unmarshal(r.body, &last); err != nil {
					t.Fatal(err)
				}
				if last.Status != st.status || last.City != st.city {
					t.Fatalf("step %d: %s → %s in %s, want %s in %s", i+1, st.action, last.Status, last.City, st.status, st.city)
				}
				var events struct {
					Items []casebook.Event `json:"items"`
				}
				e.getJSON(t, asProvince, fmt.Sprintf("/api/v1/leads/%d/events", id), &events)
				ev := events.Items[len(events.Items)-1]
				if ev.Action != st.action || ev.From != status || ev.To != st.status || ev.City != st.city || ev.UserID != e.users[st.as].ID || ev.Role != string(e.users[st.as].Role) {
					t.Errorf("step %d: event %+v", i+1, ev)
				}
				if len(events.Items) != i+2 || events.Items[0].Action != "route" {
					t.Errorf("step %d: %d events, the first %q", i+1, len(events.Items), events.Items[0].Action)
				}
				status = st.status
				switch st.city {
				case ownCity:
					holder = asCityOwn
				case e.otherCity:
					holder = asCityOther
				default:
					holder = asProvince
				}
			}
			if tc.record != nil {
				tc.record(t, last)
			}
			// Whoever no longer holds the lead no longer sees it.
			for _, city := range []struct{ as, code string }{{asCityOwn, ownCity}, {asCityOther, e.otherCity}} {
				r := e.do(t, city.as, http.MethodGet, fmt.Sprintf("/api/v1/leads/%d", id), "")
				if want := map[bool]int{true: 200, false: 404}[last.City == city.code]; r.status != want {
					t.Errorf("%s reads the lead held by %s: %d, want %d", city.as, last.City, r.status, want)
				}
			}
		})
	}
}

// Actions the workflow refuses for what they say or who sends them: 400
// for an incomplete or malformed request, 403 for the wrong role, 404 for
// another city's lead; none of them leaves an event.
func TestWorkflow_RefusedActionsLeaveNoEvent(t *testing.T) {
	e := getEnv(t)
	investigating := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	for _, body := range []string{accept, investigate} {
		if r := e.act(t, asCityOwn, investigating, body); r.status != http.StatusCreated {
			t.Fatalf("%s: %s", body, r)
		}
	}
	returned := e.leadsIn(t, e.otherCity, casebook.StatusNew, 1)[0]
	if r := e.act(t, asCityOther, returned, giveBack); r.status != http.StatusCreated {
		t.Fatalf("return: %s", r)
	}
	theirs := e.leadsIn(t, e.otherCity, casebook.StatusNew, 1)[0]
	ours := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]

	for _, tc := range []struct {
		name string
		as   string
		lead int64
		body string
		want int
	}{
		{"close without an outcome", asCityOwn, investigating, `{"action":"close","note":"已核查"}`, 400},
		{"close without a note", asCityOwn, investigating, `{"action":"close","outcome":"dismissed"}`, 400},
		{"close with a blank note", asCityOwn, investigating, `{"action":"close","outcome":"dismissed","note":"   "}`, 400},
		{"close as confirmed without the recovered amount", asCityOwn, investigating, `{"action":"close","outcome":"confirmed","note":"属实"}`, 400},
		{"close with a negative recovered amount", asCityOwn, investigating, `{"action":"close","outcome":"confirmed","recovered_amount":-1,"note":"属实"}`, 400},
		{"close with a recovered amount too large to store", asCityOwn, investigating, `{"action":"close","outcome":"confirmed","recovered_amount":1e16,"note":"属实"}`, 400},
		{"close as dismissed with a recovered amount", asCityOwn, investigating, `{"action":"close","outcome":"dismissed","recovered_amount":5,"note":"排除"}`, 400},
		{"close with an unknown outcome", asCityOwn, investigating, `{"action":"close","outcome":"maybe","note":"x"}`, 400},
		{"an unknown action", asCityOwn, ours, `{"action":"approve"}`, 400},
		{"no action", asCityOwn, ours, `{}`, 400},
		{"an outcome on accept", asCityOwn, ours, `{"action":"accept","outcome":"confirmed"}`, 400},
		{"return without a note", asCityOwn, ours, `{"action":"return"}`, 400},
		{"an unknown field", asCityOwn, ours, `{"action":"accept","by":"someone else"}`, 400},
		{"not JSON", asCityOwn, ours, `action=accept`, 400},
		{"two JSON values", asCityOwn, ours, `{"action":"accept"}{"action":"accept"}`, 400},
		{"reassign by a city", asCityOwn, ours, reassignTo(e.otherCity), 403},
		{"reassign to a province", asProvince, returned, reassignTo("620000"), 400},
		{"reassign to a county", asProvince, returned, reassignTo("620102"), 400},
		{"reassign to no city", asProvince, returned, `{"action":"reassign"}`, 400},
		{"reassign to a city that does not exist", asProvince, returned, reassignTo("629900"), 400},
		{"reassign to another province's city", asProvince, returned, reassignTo("110100"), 400},
		{"the province accepts a city's lead", asProvince, ours, accept, 403},
		{"a city accepts another city's lead", asCityOwn, theirs, accept, 404},
		{"a city closes another city's lead", asCityOwn, theirs, confirm, 404},
		{"a city returns another city's lead", asCityOwn, theirs, giveBack, 404},
		{"a city accepts a lead the province holds", asCityOwn, returned, accept, 404},
		{"a modeler accepts", asModeler, ours, accept, 403},
		{"an admin accepts", asAdmin, ours, accept, 403},
		{"a lead that does not exist", asCityOwn, 999999, accept, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := e.act(t, tc.as, tc.lead, tc.body); r.status != tc.want {
				t.Fatalf("got %s, want %d", r, tc.want)
			}
		})
	}
	t.Run("a body that is not declared JSON", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v1/leads/%d/events", e.base, ours), nil)
		req.Header.Set("Authorization", "Bearer "+e.tokens[asCityOwn])
		req.Header.Set("Content-Type", "text/plain")
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	for _, id := range []int64{investigating, returned, theirs, ours} {
		var status string
		e.scalar(t, &status, "SELECT status FROM casebook.leads WHERE lead_id = ?", id)
		if want := map[int64]string{investigating: "investigating", returned: "returned"}[id]; want != "" && status != want || want == "" && status != "new" {
			t.Errorf("lead %d is %s after refused actions", id, status)
		}
	}
}
