package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"collider/casebook"
)

// pageClient is a browser without a browser: a cookie jar that signs in
// through the form and keeps the session, for the page matrix.
type pageClient struct {
	http *http.Client
	base string
	t    *testing.T
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func newPageClient(t *testing.T, e *testEnv) *pageClient {
	jar, _ := cookiejar.New(nil)
	return &pageClient{http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		base: e.base, t: t}
}

func (p *pageClient) get(path string) response {
	p.t.Helper()
	resp, err := p.http.Get(p.base + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (p *pageClient) post(path string, form url.Values) response {
	p.t.Helper()
	resp, err := p.http.PostForm(p.base+path, form)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// csrf is the token a page's forms carry.
func (p *pageClient) csrf(page string) string {
	p.t.Helper()
	r := p.get(page)
	m := csrfRe.FindSubmatch(r.body)
	if m == nil {
		p.t.Fatalf("no CSRF token on %s: %s", page, r)
	}
	return string(m[1])
}

// signIn signs in with a token through the form.
func (p *pageClient) signIn(token string) response {
	p.t.Helper()
	csrf := p.csrf("/login")
	return p.post("/login", url.Values{"token": {token}, "csrf": {csrf}})
}

func signedIn(t *testing.T, e *testEnv, as string) *pageClient {
	t.Helper()
	p := newPageClient(t, e)
	if r := p.signIn(e.tokens[as]); r.status != http.StatusSeeOther {
		t.Fatalf("sign in as %s: %s", as, r)
	}
	return p
}

// Every page × every role: its own pages open, another role's answer 403
// with a link home, and without a session every page sends to /login.
func TestPages_EveryPageEveryRole(t *testing.T) {
	e := getEnv(t)
	lead := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	pages := map[string]roleStatus{
		"/leads":                              {s200, s200, s200, s403, s403},
		fmt.Sprintf("/leads/%d", lead):        {s200, s200, s404, s403, s403},
		"/overdue":                            {s200, s403, s403, s403, s403},
		"/returned":                           {s200, s403, s403, s403, s403},
		"/batches":                            {s200, s403, s403, s403, s403},
		fmt.Sprintf("/batches/%d", e.batch):   {s200, s403, s403, s403, s403},
		"/board":                              {s200, s403, s403, s403, s403},
		"/runs":                               {s200, s403, s403, s403, s403},
		fmt.Sprintf("/runs/%d", e.firstRunID): {s200, s403, s403, s403, s403},
		"/deliveries":                         {s200, s403, s403, s403, s403},
		"/suppressions":                       {s200, s403, s403, s403, s403},
		"/audit":                              {s200, s403, s403, s403, s403},
		"/models":                             {s200, s403, s403, s200, s403},
		"/models/deceased_claims":             {s200, s403, s403, s200, s403},
		"/users":                              {s403, s403, s403, s403, s200},
	}
	for _, as := range []string{asProvince, asCityOwn, asCityOther, asModeler, asAdmin} {
		t.Run(as, func(t *testing.T) {
			p := signedIn(t, e, as)
			for path, want := range pages {
				r := p.get(path)
				if r.status != want.of(as) {
					t.Errorf("%s: %d, want %d", path, r.status, want.of(as))
				}
				if r.status == http.StatusForbidden && !strings.Contains(string(r.body), `href="/"`) {
					t.Errorf("%s: a 403 page without a link home", path)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					t.Errorf("%s: %s", path, ct)
				}
			}
			// The home of each role.
			r := p.get("/")
			home := map[string]string{asProvince: "/board", asCityOwn: "/leads", asCityOther: "/leads", asModeler: "/models", asAdmin: "/users"}[as]
			if r.status != http.StatusSeeOther || r.header.Get("Location") != home {
				t.Errorf("/ sends %s to %s", as, r.header.Get("Location"))
			}
			if r := p.get("/no-such-page"); r.status != http.StatusNotFound {
				t.Errorf("an unknown page: %d", r.status)
			}
		})
	}
	anon := newPageClient(t, e)
	for path := range pages {
		if r := anon.get(path); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Errorf("%s without a session: %d to %s", path, r.status, r.header.Get("Location"))
		}
	}
}

// The token never appears in a URL or a page; the session cookie is
// HttpOnly and SameSite=Strict; a wrong token is said beside the field.
func TestPages_SignInMakesAStrictCookieAndShowsNoToken(t *testing.T) {
	e := getEnv(t)
	p := newPageClient(t, e)
	if r := p.signIn("col_not_a_token"); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "令牌无效") {
		t.Fatalf("a wrong token: %s", r)
	}
	csrf := p.csrf("/login")
	r := p.post("/login", url.Values{"token": {e.tokens[asProvince]}, "csrf": {csrf}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/board" {
		t.Fatalf("sign in: %s", r)
	}
	var cookie string
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "collider_session=") {
			cookie = c
		}
	}
	if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Errorf("session cookie %q", cookie)
	}
	for _, page := range []string{"/board", "/batches", "/runs", "/leads"} {
		if strings.Contains(string(p.get(page).body), e.tokens[asProvince]) {
			t.Errorf("%s shows the token", page)
		}
	}
	// Without the sign-in form's own CSRF token, no session.
	q := newPageClient(t, e)
	if r := q.post("/login", url.Values{"token": {e.tokens[asProvince]}}); r.status != http.StatusForbidden {
		t.Errorf("sign in without the form's token: %s", r)
	}
}

// A POST without the session's CSRF token is refused (403) and changes
// nothing; after logout the old cookie is refused; a revoked user's
// session ends at once.
func TestPages_CSRFLogoutAndRevocation(t *testing.T) {
	e := getEnv(t)
	lead := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
	p := signedIn(t, e, asCityOwn)
	for _, form := range []url.Values{{"action": {"accept"}}, {"action": {"accept"}, "csrf": {"forged"}}} {
		if r := p.post(fmt.Sprintf("/leads/%d", lead), form); r.status != http.StatusForbidden {
			t.Errorf("accept without the CSRF token: %s", r)
		}
	}
	var status string
	e.scalar(t, &status, "SELECT status FROM casebook.leads WHERE lead_id = ?", lead)
	if status != casebook.StatusNew {
		t.Fatalf("the lead moved to %s without a CSRF token", status)
	}
	csrf := p.csrf("/leads")
	var session *http.Cookie
	u, _ := url.Parse(e.base)
	for _, c := range p.http.Jar.Cookies(u) {
		if c.Name == "collider_session" {
			session = c
		}
	}
	if r := p.post("/logout", url.Values{"csrf": {csrf}}); r.status != http.StatusSeeOther {
		t.Fatalf("logout: %s", r)
	}
	old := newPageClient(t, e)
	old.http.Jar.SetCookies(u, []*http.Cookie{session})
	if r := old.get("/leads"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Errorf("the cookie after logout: %s", r)
	}

	// Revoked: the session ends at once.
	user, token, err := e.cb.AddUser(t.Context(), "将被注销", casebook.RoleProvince, "")
	if err != nil {
		t.Fatal(err)
	}
	v := newPageClient(t, e)
	if r := v.signIn(token); r.status != http.StatusSeeOther {
		t.Fatal(r)
	}
	if r := v.get("/board"); r.status != http.StatusOK {
		t.Fatal(r)
	}
	if err := e.cb.Revoke(t.Context(), user.ID); err != nil {
		t.Fatal(err)
	}
	if r := v.get("/board"); r.status != http.StatusSeeOther {
		t.Errorf("a revoked user's session: %s", r)
	}
}

var totalRe = regexp.MustCompile(`共 <strong>([0-9,]+)</strong> 条`)

// Every plain list page says how many rows it has, in all, and downloads
// them all as CSV (the API's field names) and XLSX (Chinese headings, a
// sheet for people), each download audited; another role cannot download.
func TestPages_ListsCountAndDownload(t *testing.T) {
	e := getEnv(t)
	for _, l := range []struct {
		path, as, table, field, heading string
	}{
		{"/batches", asProvince, "casebook.batches", "batch_id", "批次"},
		{"/runs", asProvince, "casebook.runs", "run_id", "运行"},
		{"/deliveries", asProvince, "deliveries", "delivery_id", "交付"},
		{"/suppressions", asProvince, "casebook.suppressions", "id", "编号"},
		{"/audit", asProvince, "casebook.audit", "audit_id", "编号"},
		{"/users", asAdmin, "casebook.users", "id", "编号"},
	} {
		t.Run(strings.TrimPrefix(l.path, "/"), func(t *testing.T) {
			p := signedIn(t, e, l.as)
			var want int
			e.scalar(t, &want, "SELECT count(*) FROM "+l.table)
			m := totalRe.FindSubmatch(p.get(l.path).body)
			if m == nil {
				t.Fatalf("%s does not say how many rows it has", l.path)
			}
			if got, _ := strconv.Atoi(strings.ReplaceAll(string(m[1]), ",", "")); got != want && l.path != "/audit" {
				t.Errorf("%s says 共 %d 条, the store has %d", l.path, got, want)
			}
			r := p.get(l.path + "/export?format=csv")
			if r.status != http.StatusOK {
				t.Fatalf("CSV: %s", r)
			}
			csvRows := readCSV(t, r.body)
			if csvRows.header[0] != l.field || len(csvRows.rows) < want || l.path != "/audit" && len(csvRows.rows) != want {
				t.Errorf("CSV: header %v and %d rows; the store has %d", csvRows.header, len(csvRows.rows), want)
			}
			ids := map[string]bool{}
			for _, row := range csvRows.rows {
				if ids[row[0]] {
					t.Errorf("CSV: %s %s twice", l.field, row[0])
				}
				ids[row[0]] = true
			}
			r = p.get(l.path + "/export?format=xlsx")
			if r.status != http.StatusOK {
				t.Fatalf("XLSX: %s", r)
			}
			f, err := excelize.OpenReader(bytes.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sheet := f.GetSheetList()[0]
			header, _ := f.GetRows(sheet)
			rows := peopleSheet(t, f, sheet, header[0])
			if header[0][0] != l.heading || len(rows)-1 < want {
				t.Errorf("XLSX: headings %v and %d rows; the store has %d", header[0], len(rows)-1, want)
			}
			var audited int
			e.scalar(t, &audited, "SELECT count(*) FROM casebook.audit WHERE action = 'download' AND object = ?", l.path+"/export?format=xlsx")
			if audited == 0 {
				t.Errorf("the download of %s is not audited", l.path)
			}
			other := signedIn(t, e, asCityOwn)
			if r := other.get(l.path + "/export?format=csv"); r.status != http.StatusForbidden {
				t.Errorf("a city downloads %s: %s", l.path, r)
			}
		})
	}
}
