package casebook

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"collider/domain"
	"collider/store"
)

type fixture struct {
	cb                     *Casebook
	province, lanzhou      User
	baiyin, modeler, admin User
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 2, Files: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cb := New(s.DB)
	now := time.Date(2026, 3, 15, 10, 0, 0, 0, time.Local)
	cb.Now = func() time.Time { return now }
	f := &fixture{cb: cb}
	add := func(name string, role Role, city string) User {
		u, _, err := cb.AddUser(context.Background(), name, role, city)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	f.province = add("省专班", RoleProvince, "")
	f.lanzhou = add("兰州市医保局", RoleCity, "620100")
	f.baiyin = add("白银市医保局", RoleCity, "620400")
	f.modeler = add("建模", RoleModeler, "")
	f.admin = add("运维", RoleAdmin, "")
	return f
}

// addLead inserts a published clue and its lead routed to city.
func (f *fixture) addLead(t *testing.T, id int64, city, severity string) {
	t.Helper()
	ctx := context.Background()
	_, err := f.cb.DB.ExecContext(ctx, `INSERT INTO casebook.clues VALUES (?, 1, 'deceased_claims', 'v1', ?, 10, 'after_death',
		'62010219800229123X', '张三', 'P62010200001', '仁和大药房', ?, 1, ?, TIMESTAMP '2026-01-02 10:00:00', TIMESTAMP '2026-01-02 10:00:00',
		100, 80, '参保人62010219800229123X（张三）于2025-12-01死亡', '[{"death_date":"2025-12-01"}]', NULL)`, id, severity, city, fmt.Sprintf("S%d", id))
	if err != nil {
		t.Fatal(err)
	}
	now := f.cb.now()
	if _, err := f.cb.DB.ExecContext(ctx, `INSERT INTO casebook.leads VALUES (?, ?, 'new', NULL, NULL, NULL, ?, ?, ?, NULL)`,
		id, city, now, now.AddDate(0, 0, f.cb.dueDays(severity)), now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cb.DB.ExecContext(ctx, `INSERT INTO casebook.lead_events VALUES (nextval('casebook.event_ids'), ?, ?, NULL, 'collider', 'system', 'route', NULL, 'new', ?, NULL, NULL, NULL)`,
		id, now, city); err != nil {
		t.Fatal(err)
	}
	f.cb.forgetLeads() // written around the casebook: read it again
}

func amount(v float64) *float64 { return &v }

// Every action from every status, by the lead's own city: only the spec's
// transitions succeed; everything else is domain.ECONFLICT and changes nothing.
func TestAct_OnlyTheWorkflowsTransitions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	actions := map[string]Action{
		ActionAccept:      {Action: ActionAccept},
		ActionInvestigate: {Action: ActionInvestigate},
		ActionClose:       {Action: ActionClose, Outcome: OutcomeConfirmed, RecoveredAmount: amount(80), Note: "冒用属实"},
		ActionReturn:      {Action: ActionReturn, Note: "非本市机构"},
	}
	// How to bring a lead to each status, from new.
	paths := map[string][]string{
		StatusNew:           nil,
		StatusAccepted:      {ActionAccept},
		StatusInvestigating: {ActionAccept, ActionInvestigate},
		StatusClosed:        {ActionAccept, ActionInvestigate, ActionClose},
		StatusReturned:      {ActionReturn},
	}
	allowed := map[string]string{ // from/action → to
		StatusNew + "/" + ActionAccept:           StatusAccepted,
		StatusAccepted + "/" + ActionInvestigate: StatusInvestigating,
		StatusInvestigating + "/" + ActionClose:  StatusClosed,
		StatusNew + "/" + ActionReturn:           StatusReturned,
		StatusAccepted + "/" + ActionReturn:      StatusReturned,
	}
	id := int64(100)
	for from, path := range paths {
		for name, a := range actions {
			id++
			f.addLead(t, id, "620100", "high")
			for _, step := range path {
				if _, err := f.cb.Act(ctx, f.lanzhou, id, actions[step]); err != nil {
					t.Fatalf("reaching %s: %s: %v", from, step, err)
				}
			}
			actor := f.lanzhou
			if from == StatusReturned {
				actor = f.province // a returned lead is held by the province
			}
			before, _ := f.cb.Events(ctx, f.province, id)
			l, err := f.cb.Act(ctx, actor, id, a)
			want, ok := allowed[from+"/"+name]
			switch {
			case ok && err != nil:
				t.Errorf("%s → %s: %v", from, name, err)
			case ok && l.Status != want:
				t.Errorf("%s → %s: status %s, want %s", from, name, l.Status, want)
			case !ok && domain.ErrorCode(err) != domain.ECONFLICT && domain.ErrorCode(err) != domain.EFORBIDDEN:
				t.Errorf("%s → %s: got %v, want a conflict", from, name, err)
			}
			after, _ := f.cb.Events(ctx, f.province, id)
			if ok && len(after) != len(before)+1 || !ok && len(after) != len(before) {
				t.Errorf("%s → %s: events %d → %d", from, name, len(before), len(after))
			}
		}
	}
}

func TestAct_ReturnedLeadIsReassignedByTheProvince(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 1, "620100", "medium")
	if _, err := f.cb.Act(ctx, f.lanzhou, 1, Action{Action: ActionReturn, Note: "机构在白银"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cb.Lead(ctx, f.lanzhou, 1); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Fatalf("a returned lead stays visible to the city: %v", err)
	}
	if _, err := f.cb.Act(ctx, f.baiyin, 1, Action{Action: ActionReassign, City: "620400"}); domain.ErrorCode(err) != domain.ENOTFOUND && domain.ErrorCode(err) != domain.EFORBIDDEN {
		t.Fatalf("a city reassigned: %v", err)
	}
	l, err := f.cb.Act(ctx, f.province, 1, Action{Action: ActionReassign, City: "620400"})
	if err != nil || l.Status != StatusNew || l.City != "620400" {
		t.Fatalf("reassign: %+v %v", l, err)
	}
	if _, err := f.cb.Act(ctx, f.baiyin, 1, Action{Action: ActionAccept}); err != nil {
		t.Fatal(err)
	}
	ev, _ := f.cb.Events(ctx, f.province, 1)
	var trail []string
	for _, e := range ev {
		trail = append(trail, e.Action+":"+e.To+"@"+e.City)
	}
	if fmt.Sprint(trail) != "[route:new@620100 return:returned@620000 reassign:new@620400 accept:accepted@620400]" {
		t.Fatalf("trail %v", trail)
	}
}

func TestAct_ClosingNeedsOutcomeNoteAndAmount(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 1, "620100", "high")
	f.cb.Act(ctx, f.lanzhou, 1, Action{Action: ActionAccept})
	f.cb.Act(ctx, f.lanzhou, 1, Action{Action: ActionInvestigate})
	bad := []Action{
		{Action: ActionClose, Note: "x"},
		{Action: ActionClose, Outcome: "maybe", Note: "x"},
		{Action: ActionClose, Outcome: OutcomeConfirmed, Note: "x"},
		{Action: ActionClose, Outcome: OutcomeConfirmed, RecoveredAmount: amount(-1), Note: "x"},
		{Action: ActionClose, Outcome: OutcomeDismissed},
		{Action: ActionClose, Outcome: OutcomeDismissed, RecoveredAmount: amount(5), Note: "x"},
		{Action: "approve"},
	}
	for _, a := range bad {
		if _, err := f.cb.Act(ctx, f.lanzhou, 1, a); domain.ErrorCode(err) != domain.EINVALID {
			t.Errorf("%+v: %v", a, err)
		}
	}
	l, err := f.cb.Act(ctx, f.lanzhou, 1, Action{Action: ActionClose, Outcome: OutcomeDismissed, Note: "死亡日期有误"})
	if err != nil || l.Outcome != OutcomeDismissed || l.ClosedAt == nil {
		t.Fatalf("%+v %v", l, err)
	}
}

func TestAct_OtherCitiesAndRolesCannotTouchALead(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 1, "620100", "high")
	for _, u := range []User{f.baiyin, f.modeler, f.admin, f.province} {
		_, err := f.cb.Act(ctx, u, 1, Action{Action: ActionAccept})
		if code := domain.ErrorCode(err); code != domain.ENOTFOUND && code != domain.EFORBIDDEN {
			t.Errorf("%s: %v", u.Name, err)
		}
	}
	if _, err := f.cb.Lead(ctx, f.baiyin, 1); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Fatalf("another city sees the lead: %v", err)
	}
}

func TestClues_MaskedForModelers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 1, "620100", "high")
	cl, err := f.cb.Clue(ctx, f.modeler, 1)
	if err != nil {
		t.Fatal(err)
	}
	if cl.PersonID != "620102********123X" || cl.PersonName != "张*" || cl.Narrative != "参保人620102********123X（张*）于2025-12-01死亡" {
		t.Fatalf("%+v", cl)
	}
	cl, _ = f.cb.Clue(ctx, f.lanzhou, 1)
	if cl.PersonID != "62010219800229123X" {
		t.Fatalf("city sees %s", cl.PersonID)
	}
}

func TestUsers_TokensAreHashedAndRevocable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u, token, err := f.cb.AddUser(ctx, "酒泉市医保局", RoleCity, "620900")
	if err != nil {
		t.Fatal(err)
	}
	var stored string
	f.cb.DB.QueryRow("SELECT token_hash FROM casebook.users WHERE user_id = ?", u.ID).Scan(&stored)
	if stored == token || stored != HashToken(token) {
		t.Fatal("token not stored hashed")
	}
	if got, err := f.cb.Authenticate(ctx, token); err != nil || got.City != "620900" {
		t.Fatalf("%+v %v", got, err)
	}
	if err := f.cb.Revoke(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cb.Authenticate(ctx, token); domain.ErrorCode(err) != domain.EUNAUTHORIZED {
		t.Fatalf("revoked token works: %v", err)
	}
	for _, bad := range [][3]string{{"", "city", "620100"}, {"x", "city", ""}, {"x", "city", "620102"}, {"x", "boss", ""}, {"x", "province", "620100"}, {"x", "city", "629900"}} {
		if _, _, err := f.cb.AddUser(ctx, bad[0], Role(bad[1]), bad[2]); domain.ErrorCode(err) != domain.EINVALID {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

// An inbox page is remembered, and forgotten as soon as a lead changes.
func TestLeads_InboxShowsEveryChangeAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 1, "620100", "high")
	f.addLead(t, 2, "620100", "low")
	first, err := f.cb.Leads(ctx, f.lanzhou, LeadFilter{})
	if err != nil || len(first) != 2 || first[0].Status != StatusNew {
		t.Fatalf("%+v %v", first, err)
	}
	if _, err := f.cb.Act(ctx, f.lanzhou, 1, Action{Action: ActionAccept}); err != nil {
		t.Fatal(err)
	}
	again, _ := f.cb.Leads(ctx, f.lanzhou, LeadFilter{})
	if again[0].Status != StatusAccepted {
		t.Fatalf("the inbox still shows %s after the accept", again[0].Status)
	}
	if other, _ := f.cb.Leads(ctx, f.baiyin, LeadFilter{}); len(other) != 0 {
		t.Fatalf("another city's inbox shows %d leads", len(other))
	}
}

func TestLeads_UnknownStatusIsRefused(t *testing.T) {
	f := newFixture(t)
	if _, err := f.cb.Leads(context.Background(), f.lanzhou, LeadFilter{Status: "done"}); domain.ErrorCode(err) != domain.EINVALID {
		t.Fatalf("got %v", err)
	}
	if _, err := f.cb.Clues(context.Background(), f.province, ClueFilter{Status: "done"}); domain.ErrorCode(err) != domain.EINVALID {
		t.Fatalf("got %v", err)
	}
}

// A remembered token is refused the moment its user is revoked, even while
// other requests are authenticating it at the same time.
func TestUsers_RevokedTokenIsRefusedRightAfterRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u, token, err := f.cb.AddUser(ctx, "定西市医保局", RoleCity, "621100")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					f.cb.Authenticate(ctx, token)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := f.cb.Revoke(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := f.cb.Authenticate(ctx, token); domain.ErrorCode(err) != domain.EUNAUTHORIZED {
			t.Fatalf("attempt %d after the revocation: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if _, err := f.cb.Authenticate(ctx, token); domain.ErrorCode(err) != domain.EUNAUTHORIZED {
		t.Fatalf("after the racing lookups: %v", err)
	}
}
