// The pages phase of collider bench api (issue 12): the server time of the
// pages a person clicks through most, /leads, /board and /batches/{id},
// signed in by cookie as a browser is, next to their API twins.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// signIn signs a token in through the sign-in form and returns the session cookie.
func (bs *benchServer) signIn(token string) (*http.Cookie, error) {
	noRedirect := &http.Client{Transport: bs.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(bs.base + "/login")
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var csrf *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "collider_login" {
			csrf = ck
		}
	}
	if csrf == nil {
		return nil, fmt.Errorf("GET /login set no sign-in cookie")
	}
	form := url.Values{"token": {token}, "csrf": {csrf.Value}}
	req, _ := http.NewRequest("POST", bs.base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(csrf)
	if resp, err = noRedirect.Do(req); err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "collider_session" && ck.Value != "" {
			return ck, nil
		}
	}
	return nil, fmt.Errorf("POST /login answered %d without a session", resp.StatusCode)
}

// timed requests path n times, one at a time, by cookie or by token.
func (bs *benchServer) timed(ctx context.Context, path string, n int, cookie *http.Cookie, token string) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < n && ctx.Err() == nil; i++ {
		req, _ := http.NewRequest("GET", bs.base+path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		} else {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		t0 := time.Now()
		resp, err := bs.client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		out = append(out, time.Since(t0))
	}
	sortDurations(out)
	return out, nil
}

func (bs *benchServer) pagesPhase(ctx context.Context, rounds int, stdout, stderr io.Writer) error {
	fmt.Fprintf(stderr, "pages: each page and its API twin %d times, one at a time\n", rounds)
	city := bs.cities[0]
	cityCookie, err := bs.signIn(city.token)
	if err != nil {
		return err
	}
	provCookie, err := bs.signIn(bs.province)
	if err != nil {
		return err
	}
	batch := bs.batches[len(bs.batches)-1]
	pairs := []struct {
		page, api string
		cookie    *http.Cookie
		token     string
	}{
		{"/leads", "/api/v1/leads?limit=50", cityCookie, city.token},
		{"/leads?sort=due&status=new", "/api/v1/leads?limit=50&status=new", cityCookie, city.token},
		{"/leads", "/api/v1/leads?limit=50", provCookie, bs.province},
		{"/board", "/api/v1/metrics?by=city", provCookie, bs.province},
		{fmt.Sprintf("/batches/%d", batch), fmt.Sprintf("/api/v1/batches/%d", batch), provCookie, bs.province},
		{fmt.Sprintf("/leads/%d", city.leads[len(city.leads)/2]), fmt.Sprintf("/api/v1/leads/%d", city.leads[len(city.leads)/2]), cityCookie, city.token},
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "page\twho\tp50\tp99\tAPI twin\tp50\tp99\tp99 page/API")
	for _, p := range pairs {
		pl, err := bs.timed(ctx, p.page, rounds, p.cookie, "")
		if err != nil {
			return err
		}
		al, err := bs.timed(ctx, p.api, rounds, nil, p.token)
		if err != nil {
			return err
		}
		who := "province"
		if p.cookie == cityCookie {
			who = "city " + city.code
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1fx\n", p.page, who, round(quantile(pl, 0.5)), round(quantile(pl, 0.99)),
			p.api, round(quantile(al, 0.5)), round(quantile(al, 0.99)), float64(quantile(pl, 0.99))/float64(max(1, quantile(al, 0.99))))
	}
	tw.Flush()
	fmt.Fprintln(stdout, "goal (issue 12): every page's p99 under 100 ms")
	return nil
}
