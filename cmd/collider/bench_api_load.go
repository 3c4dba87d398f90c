// The clients of collider bench api: one token per city, the province's
// and a modeler's; a day's mix of reads; a run and a runaway draft started
// through the API while the clients read.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"collider/casebook"
)

// users adds a token per city with leads, the province's and a modeler's,
// and reads each city's leads.
func (bs *benchServer) users(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SELECT city_code, lead_id, status FROM casebook.leads WHERE city_code NOT LIKE '__0000' ORDER BY city_code, lead_id")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var city, status string
		var id int64
		if err := rows.Scan(&city, &id, &status); err != nil {
			return err
		}
		if n := len(bs.cities); n == 0 || bs.cities[n-1].code != city {
			_, tok, err := bs.cb.AddUser(ctx, "bench "+city, casebook.RoleCity, city)
			if err != nil {
				return err
			}
			bs.cities = append(bs.cities, benchCity{code: city, token: tok, next: new(atomic.Int64)})
		}
		c := &bs.cities[len(bs.cities)-1]
		c.leads = append(c.leads, id)
		if status == casebook.StatusNew {
			c.fresh = append(c.fresh, id)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(bs.cities) == 0 {
		return fmt.Errorf("the casebook has no city leads")
	}
	if _, bs.province, err = bs.cb.AddUser(ctx, "bench province", casebook.RoleProvince, ""); err != nil {
		return err
	}
	_, bs.modeler, err = bs.cb.AddUser(ctx, "bench modeler", casebook.RoleModeler, "")
	return err
}

// do sends one request and reads the answer; ok is a 2xx.
func (bs *benchServer) do(method, path, token string, body []byte) (status int, err error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, bs.base+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := bs.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// singleLeads reads n leads one at a time, each a city's own.
func (bs *benchServer) singleLeads(ctx context.Context, n int) loadResult {
	res := loadResult{phase: "single"}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		c := bs.cities[rng.IntN(len(bs.cities))]
		id := c.leads[rng.IntN(len(c.leads))]
		t0 := time.Now()
		st, err := bs.do("GET", fmt.Sprintf("/api/v1/leads/%d", id), c.token, nil)
		res.requests++
		if err != nil || st != 200 {
			res.errors++
			continue
		}
		res.latencies = append(res.latencies, time.Since(t0))
	}
	res.seconds = time.Since(start).Seconds()
	sortDurations(res.latencies)
	return res
}

// hammer runs n clients with the mix until ctx ends: 50 % inbox pages
// (mostly the first, sometimes a later one), 40 % lead pages of the
// client's city (one in five followed by its events), 10 % the province's
// clue list; every 200th request of a client accepts one of its city's new
// leads (taken one at a time, so no two clients accept one lead).
func (bs *benchServer) hammer(ctx context.Context, phase string, n int) loadResult {
	var mu sync.Mutex
	res := loadResult{phase: phase, byKind: map[string][]time.Duration{}}
	var errs, reqs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			c := bs.cities[i%len(bs.cities)]
			local := map[string][]time.Duration{}
			for k := 0; ctx.Err() == nil; k++ {
				kind, method, path, token, body := bs.pick(rng, c, k)
				t0 := time.Now()
				st, err := bs.do(method, path, token, body)
				if ctx.Err() != nil {
					break // cut off by the end of the phase, not an answer
				}
				reqs.Add(1)
				if err != nil || st/100 != 2 {
					errs.Add(1)
					continue
				}
				local[kind] = append(local[kind], time.Since(t0))
			}
			mu.Lock()
			for k, ls := range local {
				res.byKind[k] = append(res.byKind[k], ls...)
				res.latencies = append(res.latencies, ls...)
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	res.seconds = time.Since(start).Seconds()
	res.requests, res.errors = reqs.Load(), errs.Load()
	sortDurations(res.latencies)
	for _, ls := range res.byKind {
		sortDurations(ls)
	}
	return res
}

// pick is a client's k-th request.
func (bs *benchServer) pick(rng *rand.Rand, c benchCity, k int) (kind, method, path, token string, body []byte) {
	if k%200 == 199 {
		if j := int(c.next.Add(1) - 1); j < len(c.fresh) {
			return "action", "POST", fmt.Sprintf("/api/v1/leads/%d/events", c.fresh[j]), c.token, []byte(`{"action":"accept"}`)
		}
	}
	switch r := rng.IntN(100); {
	case r < 50:
		path := "/api/v1/leads?limit=50"
		if rng.IntN(4) == 0 {
			path += fmt.Sprintf("&cursor=%d", c.leads[rng.IntN(len(c.leads))])
		}
		return "inbox", "GET", path, c.token, nil
	case r < 82:
		return "lead", "GET", fmt.Sprintf("/api/v1/leads/%d", c.leads[rng.IntN(len(c.leads))]), c.token, nil
	case r < 90:
		return "events", "GET", fmt.Sprintf("/api/v1/leads/%d/events", c.leads[rng.IntN(len(c.leads))]), c.token, nil
	default:
		return "clues", "GET", "/api/v1/clues?limit=50", bs.province, nil
	}
}

// busyPhase starts a run through the API and runs the mix until it ends.
func (bs *benchServer) busyPhase(ctx context.Context, clients int, stderr io.Writer) (loadResult, error) {
	fmt.Fprintln(stderr, "busy: the mix while a run started through the API loads and collides the province")
	var rec struct {
		ID int64 `json:"run_id"`
	}
	hctx, cancel := context.WithCancel(ctx)
	var res loadResult
	done := make(chan struct{})
	go func() { res = bs.hammer(hctx, "during a run", clients); close(done) }()
	start := time.Now()
	if err := bs.as(bs.province).do(ctx, http.MethodPost, "/api/v1/runs", nil, &rec); err != nil {
		cancel()
		<-done
		return res, err
	}
	var status string
	for ctx.Err() == nil {
		var r struct {
			Status  string `json:"status"`
			BatchID *int64 `json:"batch_id"`
		}
		if err := bs.as(bs.province).do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/runs/%d", rec.ID), nil, &r); err == nil && r.Status != "running" {
			status = r.Status
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	<-done
	res.note = fmt.Sprintf("run %d %s in %.1f s", rec.ID, status, time.Since(start).Seconds())
	return res, nil
}

// runawaySQL is a draft a modeler might write by mistake: every settlement
// against every settlement, billions of rows, stopped by the sandbox's limit.
const runawaySQL = `-- name: deceased_claims
-- title: 死亡人员冒用结算
-- description: a runaway draft, every settlement against every other
-- reasons:
--   after_death: 死亡后发生结算
-- narrative:
--   after_death: 参保人{person_id}
SELECT a.settlement_id, 'after_death' AS reason, json_object('n', count(*)) AS evidence
FROM settlements a CROSS JOIN settlements b CROSS JOIN settlements c
GROUP BY a.settlement_id
`

// runawayPhase runs the mix while a modeler's runaway draft is previewed.
func (bs *benchServer) runawayPhase(ctx context.Context, clients int, limit time.Duration, stderr io.Writer) (loadResult, error) {
	fmt.Fprintln(stderr, "runaway draft: the mix while a draft of a triple cross join is previewed until the sandbox's limit")
	if _, err := bs.sandbox.Snapshot.Refresh(ctx); err != nil {
		return loadResult{}, err
	}
	hctx, cancel := context.WithCancel(ctx)
	var res loadResult
	done := make(chan struct{})
	go func() { res = bs.hammer(hctx, "runaway draft", clients); close(done) }()
	start := time.Now()
	body, _ := json.Marshal(map[string]any{"sql": runawaySQL})
	req, _ := http.NewRequest("POST", bs.base+"/api/v1/models/deceased_claims/preview", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bs.modeler)
	req.Header.Set("Content-Type", "application/json")
	status, answer := 0, ""
	if resp, err := bs.client.Do(req); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status, answer = resp.StatusCode, strings.TrimSpace(string(b))
	} else {
		answer = err.Error()
	}
	cancel()
	<-done
	res.note = fmt.Sprintf("the draft answered %d after %.1f s (limit %s): %.160s", status, time.Since(start).Seconds(), limit, answer)
	return res, nil
}

// as is the command line's client of the server, acting with token.
func (bs *benchServer) as(token string) *apiClient {
	return &apiClient{base: bs.base, token: token, http: bs.client}
}
