package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's first command: `collider demo` generates a province, runs the
// whole job, prints a token per role and serves the API, which answers each
// role as it should; SIGTERM ends it cleanly.
func TestDemo_RunsTheWholeJobAndServes(t *testing.T) {
	cmd := exec.Command(binary, "demo", "--dir", t.TempDir(), "--settlements", "3000", "--addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	tokens := map[string]string{} // role → the first token printed for it
	var base string
	var printed strings.Builder
	lines := bufio.NewScanner(stdout)
	section := ""
	for base == "" && lines.Scan() {
		line := lines.Text()
		printed.WriteString(line + "\n")
		switch {
		case strings.HasPrefix(line, "3. demo users"):
			section = "users"
		case strings.HasPrefix(line, "4. serving the pages and the API on "):
			base = strings.Fields(strings.TrimPrefix(line, "4. serving the pages and the API on "))[0]
		case section == "users":
			if f := strings.Fields(line); len(f) >= 3 {
				if _, ok := tokens[f[0]]; !ok {
					tokens[f[0]] = f[len(f)-1]
				}
			}
		}
	}
	// The pages' address and a sign-in token per role follow.
	var pages strings.Builder
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "   API:") {
		pages.WriteString(lines.Text() + "\n")
	}
	go io.Copy(io.Discard, stdout)
	if base == "" {
		t.Fatalf("the demo never served:\n%s\n%s", printed.String(), stderr.String())
	}
	for _, role := range []string{"province", "city", "modeler", "admin"} {
		if tokens[role] == "" {
			t.Fatalf("no %s token printed:\n%s", role, printed.String())
		}
	}
	if !strings.Contains(pages.String(), base+"/login") {
		t.Errorf("the demo does not say where the pages are:\n%s", pages.String())
	}
	for _, role := range []string{"province", "city", "modeler", "admin"} {
		if !strings.Contains(pages.String(), "("+role+")") || !strings.Contains(pages.String(), tokens[role]) {
			t.Errorf("the pages' sign-in token for %s is not printed:\n%s", role, pages.String())
		}
	}
	signInPage(t, base, tokens["province"], "/board", "督办看板")
	signInPage(t, base, tokens["city"], "/leads", "线索收件箱")
	get := func(path, token string, out any) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	if code := get("/healthz", "", nil); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	var batches struct {
		Items []struct {
			ID    int64 `json:"batch_id"`
			Clues int64 `json:"clues"`
		}
	}
	if code := get("/api/v1/batches", tokens["province"], &batches); code != 200 || len(batches.Items) != 1 || batches.Items[0].Clues == 0 {
		t.Fatalf("batches: %d %+v", code, batches)
	}
	var leads struct {
		Items []struct {
			City string `json:"city_code"`
		}
	}
	if code := get("/api/v1/leads?limit=50", tokens["city"], &leads); code != 200 || len(leads.Items) == 0 {
		t.Fatalf("the city's inbox: %d, %d leads", code, len(leads.Items))
	}
	for _, l := range leads.Items {
		if l.City != "620100" {
			t.Fatalf("the 620100 bureau sees a lead of %s", l.City)
		}
	}
	var clues struct {
		Items []struct {
			PersonID string `json:"person_id"`
		}
	}
	if code := get("/api/v1/clues?limit=5", tokens["modeler"], &clues); code != 200 || len(clues.Items) == 0 {
		t.Fatalf("the modeler's clues: %d", code)
	}
	for _, c := range clues.Items {
		if !strings.Contains(c.PersonID, "********") {
			t.Fatalf("the modeler sees %q unmasked", c.PersonID)
		}
	}
	if code := get("/api/v1/users", tokens["admin"], nil); code != 200 {
		t.Fatalf("users as admin: %d", code)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the demo did not end cleanly on SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not stop within 20 s of SIGTERM")
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInPage signs in through the sign-in form with a token and expects
// the role's home page.
func signInPage(t *testing.T, base, token, home, heading string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	page := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", resp.Request.URL, resp.StatusCode)
		}
		return string(b)
	}
	m := csrfField.FindStringSubmatch(page(client.Get(base + "/login")))
	if m == nil {
		t.Fatal("the sign-in form has no CSRF token")
	}
	resp, err := client.PostForm(base+"/login", url.Values{"token": {token}, "csrf": {m[1]}})
	body := page(resp, err)
	if resp.Request.URL.Path != home || !strings.Contains(body, heading) {
		t.Errorf("signed in with the demo's token: at %s, want %s with %s", resp.Request.URL.Path, home, heading)
	}
}
