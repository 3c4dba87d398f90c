// collider demo: the whole job on an embedded default — a small synthetic
// province generated, loaded, collided and published, demo users for each
// role, and the API served on localhost — for a newcomer's first run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"collider/casebook"
	"collider/jobs"
	"collider/synth"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "collider-demo"), "working directory: DIR/inbox for the feeds, DIR/data for the store")
	settlements := fs.Int64("settlements", 20_000, "settlements in the synthetic province")
	seed := fs.Int64("seed", 1, "random seed")
	memoryLimit := fs.String("memory-limit", "", "DuckDB memory limit (default 60% of RAM)")
	addr := fs.String("addr", "127.0.0.1:8080", "where to serve the API afterwards (empty: do not serve)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "collider demo:", err)
		return 1
	}
	inbox, data := filepath.Join(*dir, "inbox"), filepath.Join(*dir, "data")
	// A demo starts afresh: an old store would have loaded these deliveries already.
	for _, d := range []string{inbox, data} {
		if err := os.RemoveAll(d); err != nil {
			return fail(err)
		}
	}
	fmt.Fprintf(stdout, "1. generating a synthetic province of %d settlements (with bad deliveries) in %s\n", *settlements, inbox)
	sum, err := generate(ctx, synth.Options{Out: inbox, Seed: *seed, Settlements: *settlements, Bad: true}, stderr)
	if err != nil {
		return fail(err)
	}
	printGenSummary(stdout, sum)

	fmt.Fprintf(stdout, "\n2. one run: load the deliveries, run every model, publish a batch (store in %s)\n", data)
	cat, err := liveCatalog(ctx, "", stderr)
	if err != nil {
		return fail(err)
	}
	cfg := defaultConfig()
	cfg.Data, cfg.MemoryLimit = data, *memoryLimit
	cfg.Inbox, cfg.Schedule, cfg.ShutdownGrace = inbox, "off", 10*time.Second
	s, err := openStore(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	cb := newCasebook(s, cfg)
	p := &jobs.Pipeline{Store: s, Casebook: cb, Catalog: cat, Inbox: inbox, Snapshot: newSandbox(s, cfg).Snapshot}
	out, _ := runWithProgress(ctx, p, stderr)
	printRunSummary(stdout, out)
	if out.BatchID == 0 {
		return fail(fmt.Errorf("no batch published: %v", out.Err))
	}
	fmt.Fprintln(stdout, "   (the bad deliveries failed alone, as they should: wrong schema, corrupt file; bad rows became rejects)")

	fmt.Fprintln(stdout, "\n3. demo users, one per role (tokens are shown once):")
	users := []struct {
		name string
		role casebook.Role
		city string
	}{{"省医保局专班", casebook.RoleProvince, ""}, {"兰州市医保局", casebook.RoleCity, "620100"}, {"天水市医保局", casebook.RoleCity, "620500"},
		{"建模组", casebook.RoleModeler, ""}, {"运维", casebook.RoleAdmin, ""}}
	tokens := map[casebook.Role]string{}
	for _, u := range users {
		_, token, err := cb.AddUser(ctx, u.name, u.role, u.city)
		if err != nil {
			return fail(err)
		}
		if _, ok := tokens[u.role]; !ok {
			tokens[u.role] = token
		}
		fmt.Fprintf(stdout, "   %-9s %-8s %-6s %s\n", u.role, u.name, u.city, token)
	}
	if *addr == "" {
		return 0
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fail(err)
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, `
4. serving the pages and the API on %[1]s until Ctrl-C.
   Pages: open %[1]s/login in a browser and sign in with one of the tokens above:
     省级专班 (province) %[2]s  → 督办看板, 批次, 运行, 审计
     兰州市医保局 (city)  %[3]s  → 线索收件箱: 签收, 核查, 结案, 退回
     建模组 (modeler)     %[4]s  → 模型: 参数预览, 草稿提交
     运维 (admin)         %[6]s  → 用户与令牌
   API:
   curl -s %[1]s/healthz
   curl -s -H 'Authorization: Bearer %[2]s' %[1]s/api/v1/batches
   curl -s -H 'Authorization: Bearer %[3]s' '%[1]s/api/v1/leads?limit=3'
   curl -s -H 'Authorization: Bearer %[4]s' '%[1]s/api/v1/clues?limit=2'      # masked for the modeler
   curl -s -H 'Authorization: Bearer %[2]s' -o batch.csv '%[1]s/api/v1/batches/%[5]d/export?format=csv'
   curl -s -H 'Authorization: Bearer %[3]s' -H 'Content-Type: application/json' \
        -d '{"action":"accept"}' %[1]s/api/v1/leads/LEAD_ID/events
   curl -s %[1]s/api/v1/openapi.json
`, base, tokens[casebook.RoleProvince], tokens[casebook.RoleCity], tokens[casebook.RoleModeler], out.BatchID, tokens[casebook.RoleAdmin])
	if err := serve(ctx, s, cfg, ln, slog.Default(), nil, stderr); err != nil {
		return fail(err)
	}
	return 0
}
