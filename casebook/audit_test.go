package casebook

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func (f *fixture) auditObjects(t *testing.T) []string {
	t.Helper()
	rows, err := f.cb.DB.Query("SELECT object FROM casebook.audit ORDER BY audit_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		rows.Scan(&o)
		out = append(out, o)
	}
	return out
}

func TestAudit_LinesAreCommittedInOrderBeforeAuditReturns(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := f.cb.Audit(ctx, f.province, "view", fmt.Sprintf("lead %d", i), 1, ""); err != nil {
			t.Fatal(err)
		}
		// Committed when Audit returns: another connection reads it.
		if got := f.auditObjects(t); len(got) != i+1 || got[i] != fmt.Sprintf("lead %d", i) {
			t.Fatalf("after audit %d the log is %v", i, got)
		}
	}
}

// A line keeps what it was given: its time as China's wall clock to the
// microsecond, the user, no detail as NULL.
func TestAudit_ALineKeepsItsTimeUserAndDetail(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 3, 15, 23, 30, 1, 123456789, time.UTC) // 2026-03-16 07:30:01.123456 in China
	f.cb.Now = func() time.Time { return at }
	ctx := context.Background()
	if err := f.cb.Audit(ctx, f.lanzhou, "download", "batch 7 csv", 12, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.cb.Audit(ctx, f.province, "view", "lead 3", 1, "详情"); err != nil {
		t.Fatal(err)
	}
	rows, err := f.cb.DB.Query(`SELECT strftime(event_at, '%Y-%m-%d %H:%M:%S.%f'), user_id, user_name, role, action, object, rows,
		coalesce(detail, 'NULL') FROM casebook.audit ORDER BY audit_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var at, name, role, action, object, detail string
		var user, n int64
		rows.Scan(&at, &user, &name, &role, &action, &object, &n, &detail)
		got = append(got, fmt.Sprintf("%s %d %s %s %s %s %d %s", at, user, name, role, action, object, n, detail))
	}
	want := []string{
		fmt.Sprintf("2026-03-16 07:30:01.123456 %d %s city download batch 7 csv 12 NULL", f.lanzhou.ID, f.lanzhou.Name),
		fmt.Sprintf("2026-03-16 07:30:01.123456 %d %s province view lead 3 1 详情", f.province.ID, f.province.Name),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the log:\n%q\nwant\n%q", got, want)
	}
}

func TestAudit_AFullQueueMakesRequestsWaitAndDropsNothing(t *testing.T) {
	f := newFixture(t)
	f.cb.audit.size = 1
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := 0; i < 300; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- f.cb.Audit(ctx, f.lanzhou, "view", fmt.Sprintf("clue %d", i), 1, "")
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, o := range f.auditObjects(t) {
		seen[o] = true
	}
	if len(seen) != 300 {
		t.Fatalf("%d distinct lines of 300", len(seen))
	}
}

func TestAudit_ConcurrentLinesGoTogetherAndKeepEachCallersOrder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if err := f.cb.Audit(ctx, f.province, "view", fmt.Sprintf("%02d %02d", g, i), 1, ""); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	last := map[string]string{}
	objs := f.auditObjects(t)
	for _, o := range objs {
		g, i := o[:2], o[3:]
		if last[g] >= i && last[g] != "" {
			t.Fatalf("caller %s: line %s after %s", g, i, last[g])
		}
		last[g] = i
	}
	if len(objs) != 200 {
		t.Fatalf("%d lines of 200", len(objs))
	}
}

func TestAudit_CloseStopsTheWriterAndLaterLinesAreStillWritten(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.cb.Audit(ctx, f.province, "view", "before", 1, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.cb.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.cb.audit.stopped:
	default:
		t.Fatal("the writer runs on after Close")
	}
	if err := f.cb.Audit(ctx, f.province, "view", "after", 1, ""); err != nil {
		t.Fatal(err)
	}
	if got := f.auditObjects(t); fmt.Sprint(got) != "[before after]" {
		t.Fatalf("log %v", got)
	}
	f.cb.Close() // twice is harmless
}

// A view's line is committed within the window without anyone waiting for
// it; Close commits the views still queued.
func TestAudit_ViewsAreCommittedWithinTheWindowAndOnClose(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.cb.auditView(ctx, f.lanzhou, "lead 1", 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(f.auditObjects(t)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := f.auditObjects(t); fmt.Sprint(got) != "[lead 1]" {
		t.Fatalf("a view after the window: %v", got)
	}
	for i := 2; i <= 50; i++ {
		f.cb.auditView(ctx, f.lanzhou, fmt.Sprintf("lead %d", i), 1)
	}
	if err := f.cb.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.auditObjects(t); len(got) != 50 || got[49] != "lead 50" {
		t.Fatalf("after Close: %d lines, last %q", len(got), got[len(got)-1])
	}
}

// An acknowledged action means the views before it are in the log, and
// the log read over the casebook shows every view answered before.
func TestAudit_AnActionAndTheLogCommitTheViewsBeforeThem(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 1, "620100", "high")
	if _, err := f.cb.Lead(ctx, f.lanzhou, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cb.Act(ctx, f.lanzhou, 1, Action{Action: ActionAccept}); err != nil {
		t.Fatal(err)
	}
	if got := f.auditObjects(t); fmt.Sprint(got) != "[lead 1]" {
		t.Fatalf("after the action: %v", got)
	}
	if _, err := f.cb.Clue(ctx, f.province, 1); err != nil {
		t.Fatal(err)
	}
	log, err := f.cb.AuditLog(ctx, 0, 10)
	if err != nil || len(log) != 2 || log[0].Object != "clue 1" {
		t.Fatalf("the log: %+v %v", log, err)
	}
}
