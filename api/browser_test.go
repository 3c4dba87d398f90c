package api_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"collider/casebook"
)

// The pages in a real browser: Debian's chromium, headless, driven by
// chromedp. Each test saves a screenshot of every page it visits, into
// COLLIDER_SCREENSHOTS when set (the README's come from there) or the
// test's temporary directory. Without chromium the tests skip, unless
// COLLIDER_REQUIRE_CHROMIUM=1 (set by .ci/run, which installs it).

var screenshotMu sync.Mutex

type browser struct {
	ctx  context.Context
	e    *testEnv
	t    *testing.T
	dir  string
	name string
	n    int
}

func newBrowser(t *testing.T, e *testEnv, name string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("COLLIDER_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("chromium is required (COLLIDER_REQUIRE_CHROMIUM=1) but not installed")
		}
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1366, 900), chromedp.Flag("disable-gpu", true), chromedp.Flag("lang", "zh-CN"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	dir := os.Getenv("COLLIDER_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{ctx: ctx, e: e, t: t, dir: dir, name: name}
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// get runs an action that returns a value.
func bget[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

// js runs a statement in the page.
func js(expr string) chromedp.Action[chromedp.Void] { return chromedp.Evaluate[chromedp.Void](expr) }

// shot saves a full-page screenshot of what the browser shows.
func (b *browser) shot(what string) {
	b.t.Helper()
	png := bget(b, chromedp.FullScreenshot(100))
	b.n++
	file := filepath.Join(b.dir, fmt.Sprintf("%s-%02d-%s.png", b.name, b.n, what))
	screenshotMu.Lock()
	defer screenshotMu.Unlock()
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

var pdfPage = regexp.MustCompile(`/Type\s*/Page\b`)

// printed prints the page to A4 as the browser's print dialog would (the
// print stylesheet applies), keeps the PDF beside the screenshots and
// returns how many sheets it takes.
func (b *browser) printed(what string) int {
	b.t.Helper()
	margin := 0.4 // inches
	res, err := chromedp.Call(b.ctx, page.PrintToPDF, page.PrintToPDFParams{PaperWidth: 8.27, PaperHeight: 11.69,
		MarginTop: &margin, MarginBottom: &margin, MarginLeft: &margin, MarginRight: &margin})
	if err != nil {
		b.t.Fatal(err)
	}
	b.n++
	file := filepath.Join(b.dir, fmt.Sprintf("%s-%02d-%s.pdf", b.name, b.n, what))
	if err := os.WriteFile(file, res.Data, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return len(pdfPage.FindAll(res.Data, -1))
}

// open goes to a page and waits for it.
func (b *browser) open(path string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.e.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// text is the page's visible text.
func (b *browser) text() string {
	b.t.Helper()
	return bget(b, chromedp.Text(chromedp.CSS("body")))
}

func (b *browser) location() string {
	b.t.Helper()
	return strings.TrimPrefix(bget(b, chromedp.Location()), b.e.base)
}

// signIn types the token into the sign-in form.
func (b *browser) signIn(as string) {
	b.t.Helper()
	b.open("/login")
	b.shot("login")
	b.run(chromedp.SendKeys(chromedp.CSS("#token"), b.e.tokens[as]), chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitReady(chromedp.CSS("header.top")))
}

// submitForm submits the form holding the hidden action (or button) named.
func (b *browser) submit(sel string) {
	b.t.Helper()
	// The page the form was on is marked, so that the wait is for the page
	// the POST answers with, not the old one still in the window.
	b.run(js(`window.colliderSubmitted = true`), chromedp.Submit(chromedp.CSS(sel)))
	// While the window changes pages an evaluation may find no document:
	// asked again until the new one is whole.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		loaded, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!window.colliderSubmitted && document.readyState === 'complete'`))
		if err == nil && loaded {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the page after submitting %s did not load: %v", sel, err)
		}
	}
}

func (b *browser) leadStatus(id int64) string {
	b.t.Helper()
	var s string
	b.e.scalar(b.t, &s, "SELECT status FROM casebook.leads WHERE lead_id = ?", id)
	return s
}

// A city bureau signs in, accepts, investigates and closes a lead as
// confirmed with a recovered amount (after a mistake the form shows beside
// its field, keeping what was typed); the province's board shows it.
func TestBrowser_CityClosesALeadAndTheBoardShowsIt(t *testing.T) {
	e := getEnv(t)
	lead := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	b := newBrowser(t, e, "city")
	b.signIn(asCityOwn)
	if loc := b.location(); loc != "/leads" || !strings.Contains(b.text(), "线索收件箱") {
		t.Fatalf("after sign-in: %s", loc)
	}
	b.shot("inbox")
	b.open(fmt.Sprintf("/leads/%d", lead))
	if !strings.Contains(b.text(), "涉及的结算与证据") || !strings.Contains(b.text(), "时间轴") {
		t.Fatalf("lead page: %s", b.text())
	}
	b.shot("lead-new")
	b.submit(`form input[name=action][value=accept]`)
	if got := b.leadStatus(lead); got != casebook.StatusAccepted {
		t.Fatalf("after 签收: %s", got)
	}
	b.submit(`form input[name=action][value=investigate]`)
	if got := b.leadStatus(lead); got != casebook.StatusInvestigating {
		t.Fatalf("after 核查: %s", got)
	}
	// A close without its note: the error beside the field, the amount kept.
	b.run(chromedp.SetValue(chromedp.CSS(`form:has(input[value=close]) select[name=outcome]`), "confirmed"),
		chromedp.SendKeys(chromedp.CSS(`form:has(input[value=close]) input[name=recovered_amount]`), "1234.5"),
		js(`window.confirm = () => true`))
	b.submit(`form input[name=action][value=close]`)
	kept := bget(b, chromedp.Value(chromedp.CSS(`form:has(input[value=close]) input[name=recovered_amount]`)))
	if !strings.Contains(b.text(), "请填写核查情况") || kept != "1234.5" || b.leadStatus(lead) != casebook.StatusInvestigating {
		t.Fatalf("a close without a note: kept %q; %s", kept, b.text())
	}
	b.shot("lead-close-error")
	b.run(chromedp.SetValue(chromedp.CSS(`form:has(input[value=close]) textarea[name=note]`), "经核实，系冒用已故人员社保卡购药，已追回。"),
		js(`window.confirm = () => true`))
	b.submit(`form input[name=action][value=close]`)
	if got := b.leadStatus(lead); got != casebook.StatusClosed {
		t.Fatalf("after 结案: %s; %s", got, b.text())
	}
	b.shot("lead-closed")
	// Printed, the lead is a one-page 核查单 (the print stylesheet drops
	// the navigation and the forms).
	if n := b.printed("lead-print"); n != 1 {
		t.Errorf("the printed lead takes %d pages, want 1", n)
	}

	p := newBrowser(t, e, "province")
	p.signIn(asProvince)
	if loc := p.location(); loc != "/board" {
		t.Fatalf("the province's home: %s", loc)
	}
	text := p.text()
	if !strings.Contains(text, "督办看板") || !strings.Contains(text, "1,234.50 元") {
		t.Fatalf("the board does not show the recovered amount: %s", text)
	}
	p.shot("board")
	p.open("/batches")
	p.shot("batches")
	p.open(fmt.Sprintf("/batches/%d", e.batch))
	if !strings.Contains(p.text(), "按市州") {
		t.Fatalf("batch page: %s", p.text())
	}
	p.shot("batch")
	for _, page := range []string{"/overdue", "/deliveries", "/suppressions", "/audit", "/leads"} {
		p.open(page)
		p.shot(strings.TrimPrefix(page, "/"))
	}
}

// A city returns a lead that is not its own; the province reassigns it.
func TestBrowser_CityReturnsAndTheProvinceReassigns(t *testing.T) {
	e := getEnv(t)
	lead := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	b := newBrowser(t, e, "return")
	b.signIn(asCityOwn)
	b.open(fmt.Sprintf("/leads/%d", lead))
	b.run(chromedp.SetValue(chromedp.CSS(`form:has(input[value=return]) textarea[name=note]`), "该机构位于邻市，非本市管辖。"),
		js(`window.confirm = () => true`))
	b.submit(`form input[name=action][value=return]`)
	if got := b.leadStatus(lead); got != casebook.StatusReturned {
		t.Fatalf("after 退回: %s", got)
	}
	p := newBrowser(t, e, "reassign")
	p.signIn(asProvince)
	p.open("/returned")
	if !strings.Contains(p.text(), fmt.Sprintf("#%d", lead)) {
		t.Fatalf("the returned lead is not listed: %s", p.text())
	}
	p.shot("returned")
	form := fmt.Sprintf(`form[action="/returned/%d"]`, lead)
	p.run(chromedp.SetValue(chromedp.CSS(form+` select[name=city_code]`), ownCity),
		chromedp.SetValue(chromedp.CSS(form+` input[name=note]`), "经核，仍由原市办理"),
		js(`window.confirm = () => true`))
	p.submit(form)
	if got := p.leadStatus(lead); got != casebook.StatusNew {
		t.Fatalf("after 改派: %s", got)
	}
}

// A modeler previews a parameter change and sees the difference from the
// live version; people show as tokens.
func TestBrowser_ModelerPreviewsAParameterChange(t *testing.T) {
	e := getEnv(t)
	b := newBrowser(t, e, "modeler")
	b.signIn(asModeler)
	if loc := b.location(); loc != "/models" {
		t.Fatalf("the modeler's home: %s", loc)
	}
	b.shot("models")
	b.open("/models/deceased_claims")
	b.shot("model")
	b.run(chromedp.SendKeys(chromedp.CSS(`input[name=param_grace_days]`), "30"))
	b.run(chromedp.Submit(chromedp.CSS(`input[name=param_grace_days]`)), chromedp.WaitVisible(chromedp.CSS("#preview")))
	text := b.text()
	if !strings.Contains(text, "与在用版本相比") || !strings.Contains(text, "减少") {
		t.Fatalf("the preview shows no difference: %s", text)
	}
	if unmaskedID.MatchString(text) {
		t.Errorf("the modeler's preview shows an ID number: %s", unmaskedID.FindString(text))
	}
	b.shot("preview")
}

// The province starts a run and watches it finish, the page updating itself.
func TestBrowser_ProvinceStartsARunAndWatchesItFinish(t *testing.T) {
	e := getEnv(t)
	e.waitForRuns(t)
	b := newBrowser(t, e, "run")
	b.signIn(asProvince)
	b.open("/runs")
	b.shot("runs")
	b.run(js(`window.confirm = () => true`))
	b.submit(`form[action="/runs"]`)
	if loc := b.location(); !strings.HasPrefix(loc, "/runs/") {
		t.Fatalf("after starting: %s", loc)
	}
	b.shot("run-started")
	// The page reloads itself when the run ends.
	b.run(chromedp.WaitVisible(chromedp.Search(`//span[@id="run-status"][contains(., "成功")]`)))
	b.shot("run-finished")
	e.waitForRuns(t)
}

// Another city's lead is the not-found page; another role's page is 403
// with a link home; a form without its CSRF token changes nothing; after
// logout the old cookie is refused.
func TestBrowser_ScopeCSRFAndLogout(t *testing.T) {
	e := getEnv(t)
	other := e.leadsIn(t, e.otherCity, casebook.StatusNew, 1)[0]
	mine := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	b := newBrowser(t, e, "scope")
	b.signIn(asCityOwn)
	b.open(fmt.Sprintf("/leads/%d", other))
	if !strings.Contains(b.text(), "未找到") {
		t.Fatalf("another city's lead: %s", b.text())
	}
	b.shot("other-city-lead")
	b.open("/board")
	if !strings.Contains(b.text(), "无权访问") {
		t.Fatalf("another role's page: %s", b.text())
	}
	b.shot("forbidden")
	b.open(fmt.Sprintf("/leads/%d", mine))
	b.run(js(`document.querySelectorAll('input[name=csrf]').forEach(i => i.remove())`))
	b.submit(`form input[name=action][value=accept]`)
	if !strings.Contains(b.text(), "请求无效") || b.leadStatus(mine) != casebook.StatusNew {
		t.Fatalf("a form without its CSRF token: %s, lead %s", b.text(), b.leadStatus(mine))
	}
	b.shot("csrf-refused")
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	cookies := res.Cookies
	b.open("/leads")
	b.submit(`form[action="/logout"]`)
	if loc := b.location(); loc != "/login" {
		t.Fatalf("after logout: %s", loc)
	}
	for _, c := range cookies {
		if _, err := chromedp.Call(b.ctx, network.SetCookie, network.SetCookieParams{Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path}); err != nil {
			t.Fatal(err)
		}
	}
	b.open("/leads")
	if loc := b.location(); loc != "/login" {
		t.Fatalf("the old cookie after logout opened %s", loc)
	}
}

// The operator adds a user, sees the token once, and revokes a user.
func TestBrowser_OperatorAddsAndRevokesUsers(t *testing.T) {
	e := getEnv(t)
	b := newBrowser(t, e, "admin")
	b.signIn(asAdmin)
	if loc := b.location(); loc != "/users" {
		t.Fatalf("the operator's home: %s", loc)
	}
	b.run(chromedp.SetValue(chromedp.CSS(`input[name=name]`), "嘉峪关市医保局核查科"),
		chromedp.SetValue(chromedp.CSS(`select[name=role]`), "city"))
	b.submit(`form[action="/users"]`)
	if !strings.Contains(b.text(), "市州医保局须选择所属市州") {
		t.Fatalf("a city user without a city: %s", b.text())
	}
	b.run(chromedp.SetValue(chromedp.CSS(`select[name=city_code]`), "620200"))
	b.submit(`form[action="/users"]`)
	token := bget(b, chromedp.Text(chromedp.CSS(`.token`)))
	if !strings.HasPrefix(strings.TrimSpace(token), "col_") {
		t.Fatalf("no token shown: %s", b.text())
	}
	b.shot("user-added")
	b.open("/users")
	if strings.Contains(b.text(), strings.TrimSpace(token)) {
		t.Fatal("the token is shown again")
	}
	if _, err := e.cb.Authenticate(t.Context(), strings.TrimSpace(token)); err != nil {
		t.Fatalf("the new token: %v", err)
	}
}
