// The end-to-end suite on real containers: the shipped image, built once
// from deploy/Dockerfile, run through testcontainers-go against the Docker
// engine. Every test here is named TestDocker_*; without an engine they skip
// with the reason, unless COLLIDER_REQUIRE_DOCKER=1 (CI), where that fails.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"collider/synth"
)

const image = "collider-e2e:test"

var skipReason string

func TestMain(m *testing.M) {
	// The reaper would need an image pull, and the machine looks like a
	// container to testcontainers, which would otherwise talk to the gateway.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	required := os.Getenv("COLLIDER_REQUIRE_DOCKER") == "1"
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		skipReason = fmt.Sprintf("no Docker engine (docker info: %v %s)", err, bytes.TrimSpace(out))
	} else if err := buildImage(); err != nil {
		skipReason = "building the image: " + err.Error()
		required = true // an engine that cannot build our image is a failure
	}
	if skipReason != "" && required {
		fmt.Fprintln(os.Stderr, "FAIL:", skipReason)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// buildImage builds the static binary and the image once, through
// testcontainers' FromDockerfile with KeepImage, timing it.
func buildImage() error {
	ctxDir, err := os.MkdirTemp("", "collider-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)
	start := time.Now()
	prep := exec.Command("./prepare-context.sh", ctxDir)
	prep.Stdout, prep.Stderr = os.Stderr, os.Stderr
	if err := prep.Run(); err != nil {
		return fmt.Errorf("prepare-context.sh: %w", err)
	}
	df, _ := os.ReadFile("Dockerfile")
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		return err
	}
	ctx := context.Background()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			FromDockerfile: testcontainers.FromDockerfile{Context: ctxDir, Dockerfile: "Dockerfile", Repo: "collider-e2e", Tag: "test", KeepImage: true},
			Cmd:            []string{"health"}, // created only to build the image
		},
		Started: false,
	})
	if err != nil {
		return err
	}
	c.Terminate(ctx)
	out, _ := exec.Command("docker", "image", "inspect", image, "--format", "{{.Size}}").Output()
	fmt.Fprintf(os.Stderr, "image %s built in %s, size %s bytes\n", image, time.Since(start).Round(time.Second), strings.TrimSpace(string(out)))
	return nil
}

func needDocker(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// volume makes a named volume for a test.
func volume(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("collider-e2e-%d", time.Now().UnixNano())
	if out, err := exec.Command("docker", "volume", "create", name).CombinedOutput(); err != nil {
		t.Fatalf("volume: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "volume", "rm", "-f", name).Run() })
	return name
}

func withVolume(vol string) func(*container.HostConfig) {
	return func(hc *container.HostConfig) { hc.Binds = append(hc.Binds, vol+":/data") }
}

// oneShot runs the image once with args on the volume and returns its output.
func oneShot(t *testing.T, vol string, files []testcontainers.ContainerFile, networks []string, args ...string) string {
	t.Helper()
	ctx := context.Background()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image: image, Cmd: args, Files: files, Networks: networks,
			HostConfigModifier: withVolume(vol),
			WaitingFor:         wait.ForExit().WithExitTimeout(2 * time.Minute),
		},
		Started: true,
	})
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	defer c.Terminate(ctx)
	logs, _ := c.Logs(ctx)
	b, _ := io.ReadAll(logs)
	st, _ := c.State(ctx)
	if st.ExitCode != 0 {
		t.Fatalf("%v exited %d:\n%s", args, st.ExitCode, b)
	}
	return string(b)
}

// addUser creates a user with a one-shot container on the volume (before
// the server holds the store) and returns the token.
func addUser(t *testing.T, vol, role, city, name string) string {
	args := []string{"users", "add", "--role", role, "--name", name}
	if city != "" {
		args = append(args, "--city", city)
	}
	out := oneShot(t, vol, nil, nil, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	token := strings.TrimSpace(lines[len(lines)-1])
	if !strings.HasPrefix(token, "col_") {
		t.Fatalf("no token in %q", out)
	}
	return token
}

// served is a running server container.
type served struct {
	c    testcontainers.Container
	base string
}

func startServer(t *testing.T, vol string, networks []string, aliases map[string][]string) *served {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image: image, ExposedPorts: []string{"8080/tcp"},
			Env:                map[string]string{"COLLIDER_SCHEDULE": "off", "COLLIDER_MEMORY_LIMIT": "2GB", "COLLIDER_LOG": "info"},
			HostConfigModifier: withVolume(vol),
			Networks:           networks, NetworkAliases: aliases,
			WaitingFor: wait.ForHTTP("/healthz").WithPort("8080/tcp").WithStartupTimeout(60 * time.Second),
		},
		Started: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Terminate(context.Background()) })
	s := &served{c: c}
	s.refresh(t)
	t.Logf("container started and healthy in %s", time.Since(start).Round(time.Millisecond))
	return s
}

// refresh re-reads the mapped port: it changes when the container restarts.
func (s *served) refresh(t *testing.T) {
	t.Helper()
	ep, err := s.c.PortEndpoint(context.Background(), "8080/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}
	s.base = ep
}

func (s *served) call(t *testing.T, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if w, ok := out.(io.Writer); ok {
		io.Copy(w, resp.Body)
	} else if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

type run struct {
	ID       int64  `json:"run_id"`
	Status   string `json:"status"`
	BatchID  *int64 `json:"batch_id"`
	Progress *struct {
		Step   string `json:"step"`
		Detail string `json:"detail"`
		Done   int64  `json:"rows_done"`
		Total  int64  `json:"rows_total"`
	} `json:"progress"`
}

func (s *served) startRun(t *testing.T, token string) run {
	t.Helper()
	var r run
	if code := s.call(t, "POST", "/api/v1/runs", token, nil, &r); code != http.StatusAccepted {
		t.Fatalf("start run: %d", code)
	}
	return r
}

func (s *served) waitRun(t *testing.T, token string, id int64) run {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		var r run
		s.call(t, "GET", fmt.Sprintf("/api/v1/runs/%d", id), token, nil, &r)
		if r.Status != "running" && r.Status != "" {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("run %d did not finish", id)
	return run{}
}

// province generates a province on the host and copies it into /inbox.
func (s *served) province(t *testing.T, settlements int64) (truthFlags map[string]bool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "inbox")
	if _, err := synth.Generate(context.Background(), synth.Options{Out: dir, Seed: 4, Settlements: settlements}); err != nil {
		t.Fatal(err)
	}
	// 0755: the server (uid 10001) must be able to enter the directories.
	if err := s.c.CopyDirToContainer(context.Background(), dir, "/", 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, synth.TruthFile))
	defer f.Close()
	recs, _ := csv.NewReader(f).ReadAll()
	truthFlags = map[string]bool{}
	for _, r := range recs[1:] {
		if r[0] == "flag" {
			truthFlags[r[1]+" "+r[2]] = true
		}
	}
	return truthFlags
}

// batchPairs downloads a batch as CSV and returns its (model, settlement) pairs.
func (s *served) batchPairs(t *testing.T, token string, batch int64) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if code := s.call(t, "GET", fmt.Sprintf("/api/v1/batches/%d/export?format=csv", batch), token, nil, &buf); code != 200 {
		t.Fatalf("export: %d %s", code, buf.String())
	}
	rd := csv.NewReader(strings.NewReader(strings.TrimPrefix(buf.String(), "\uFEFF")))
	recs, err := rd.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range recs[1:] { // model is column 3, settlement_ids column 14
		for _, id := range strings.Split(r[13], ";") {
			out[r[2]+" "+id] = true
		}
	}
	return out
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A province copied into the inbox, a run triggered through the API, the
// batch downloaded and compared with the generator's truth, a lead closed
// by its city; then the container restarts on the same volume and
// everything is still there.
func TestDocker_RunDownloadCloseAndRestart(t *testing.T) {
	needDocker(t)
	vol := volume(t)
	province := addUser(t, vol, "province", "", "省专班")
	s := startServer(t, vol, nil, nil)
	truth := s.province(t, 20_000)
	r := s.waitRun(t, province, s.startRun(t, province).ID)
	if r.Status != "succeeded" || r.BatchID == nil {
		t.Fatalf("run: %+v", r)
	}
	got := s.batchPairs(t, province, *r.BatchID)
	if !sameSet(got, truth) {
		t.Fatalf("batch has %d (model, settlement) pairs, truth %d", len(got), len(truth))
	}
	t.Logf("batch %d: %d settlements flagged, all %d planted ones, nothing else", *r.BatchID, len(got), len(truth))

	// A city bureau closes one of its leads. The city user is created with
	// the API by an admin created beforehand? No: users are created on the
	// volume before serving, so stop, add, start — which also proves restart.
	var leads struct {
		Items []struct {
			ID   int64  `json:"lead_id"`
			City string `json:"city_code"`
		}
	}
	s.call(t, "GET", "/api/v1/leads?limit=1000", province, nil, &leads)
	city := ""
	for _, l := range leads.Items {
		if !strings.HasSuffix(l.City, "0000") {
			city = l.City
			break
		}
	}
	if city == "" {
		t.Fatal("no lead routed to a city")
	}
	ctx := context.Background()
	timeout := 20 * time.Second
	if err := s.c.Stop(ctx, &timeout); err != nil {
		t.Fatal(err)
	}
	cityToken := addUser(t, vol, "city", city, "市州医保局")
	if err := s.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.refresh(t)
	waitHealthy(t, s.base)
	var inbox struct {
		Items []struct {
			ID int64 `json:"lead_id"`
		}
	}
	s.call(t, "GET", "/api/v1/leads", cityToken, nil, &inbox)
	if len(inbox.Items) == 0 {
		t.Fatal("the city has no leads after the restart")
	}
	lead := inbox.Items[0].ID
	for _, a := range []map[string]any{{"action": "accept"}, {"action": "investigate"},
		{"action": "close", "outcome": "confirmed", "recovered_amount": 356.2, "note": "冒名购药属实，已追回"}} {
		if code := s.call(t, "POST", fmt.Sprintf("/api/v1/leads/%d/events", lead), cityToken, a, nil); code != http.StatusCreated {
			t.Fatalf("%v: %d", a, code)
		}
	}

	// Restart again: users, batches, leads and events all survive.
	if err := s.c.Stop(ctx, &timeout); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.refresh(t)
	waitHealthy(t, s.base)
	var events struct{ Items []struct{ Action string } }
	if code := s.call(t, "GET", fmt.Sprintf("/api/v1/leads/%d/events", lead), cityToken, nil, &events); code != 200 || len(events.Items) != 4 {
		t.Fatalf("events after restart: %d %+v", code, events)
	}
	var batches struct{ Items []json.RawMessage }
	s.call(t, "GET", "/api/v1/batches", province, nil, &batches)
	if len(batches.Items) != 1 {
		t.Fatalf("batches after restart: %d", len(batches.Items))
	}
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not healthy", base)
}

// SIGKILL through the Docker API while the container loads a large
// delivery: after a restart nothing is half-loaded, and the next run
// publishes the same clues an uninterrupted run would (the planted truth).
func TestDocker_KilledWhileLoadingRecovers(t *testing.T) {
	needDocker(t)
	vol := volume(t)
	province := addUser(t, vol, "province", "", "省专班")
	s := startServer(t, vol, nil, nil)
	truth := s.province(t, 600_000)
	r := s.startRun(t, province)
	// Wait until the settlements delivery is loading, then kill at once:
	// on a fast machine the whole delivery loads in about a second, so a
	// pause here could let it finish before the signal.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var cur run
		s.call(t, "GET", fmt.Sprintf("/api/v1/runs/%d", r.ID), province, nil, &cur)
		if p := cur.Progress; p != nil && p.Step == "load" && strings.HasPrefix(p.Detail, "settlements") {
			if p.Total > 0 && p.Done >= p.Total {
				t.Fatalf("the settlements load had finished before the kill could be sent: %+v", *p)
			}
			break
		}
		if cur.Status != "running" || time.Now().After(deadline) {
			t.Fatalf("never caught the settlements load: %+v", cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerKill(ctx, s.c.GetContainerID(), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	t.Log("SIGKILL sent while loading settlements")
	if err := s.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.refresh(t)
	waitHealthy(t, s.base)
	var killed run
	if code := s.call(t, "GET", fmt.Sprintf("/api/v1/runs/%d", r.ID), province, nil, &killed); code != 200 || killed.Status != "interrupted" {
		t.Fatalf("the killed run: %d %q", code, killed.Status)
	}
	type delivery struct {
		Feed   string `json:"feed"`
		Status string `json:"status"`
		Rows   int64  `json:"rows"`
		Loaded int64  `json:"loaded"`
	}
	ledger := func() map[string]delivery {
		var page struct{ Items []delivery }
		if code := s.call(t, "GET", "/api/v1/deliveries", province, nil, &page); code != 200 || len(page.Items) == 0 {
			t.Fatalf("deliveries: %d, %d items", code, len(page.Items))
		}
		out := map[string]delivery{}
		for _, d := range page.Items {
			if d.Status == "loaded" && d.Loaded != d.Rows {
				t.Fatalf("delivery %s loaded %d of its %d rows", d.Feed, d.Loaded, d.Rows)
			}
			out[d.Feed] = d
		}
		return out
	}
	// The feeds loaded before the kill are whole; the one killed mid-load
	// left nothing behind, not even a ledger entry.
	before := ledger()
	if d, ok := before["settlements"]; ok {
		t.Fatalf("the settlements delivery was recorded although killed mid-load: %+v", d)
	}
	if d := before["residents"]; d.Status != "loaded" {
		t.Fatalf("residents, loaded before the kill: %+v", d)
	}
	again := s.waitRun(t, province, s.startRun(t, province).ID)
	if again.Status != "succeeded" || again.BatchID == nil {
		t.Fatalf("the run after the kill: %+v", again)
	}
	if d := ledger()["settlements"]; d.Status != "loaded" || d.Loaded == 0 {
		t.Fatalf("settlements after the next run: %+v", d)
	}
	got := s.batchPairs(t, province, *again.BatchID)
	if !sameSet(got, truth) {
		t.Fatalf("after the kill: %d pairs, truth %d", len(got), len(truth))
	}
	t.Logf("after the kill: batch %d has all %d planted settlements and nothing else", *again.BatchID, len(truth))
}

// Two containers on one Docker network: the server, and a city bureau's
// client from the same image reaching it by its alias, pulling its leads
// and posting feedback.
func TestDocker_CityClientOnTheSameNetwork(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Remove(context.Background()) })
	vol := volume(t)
	province := addUser(t, vol, "province", "", "省专班")
	cityToken := addUser(t, vol, "city", "620100", "兰州市医保局")
	s := startServer(t, vol, []string{nw.Name}, map[string][]string{nw.Name: {"collider"}})
	s.province(t, 20_000)
	if r := s.waitRun(t, province, s.startRun(t, province).ID); r.Status != "succeeded" {
		t.Fatalf("run: %+v", r)
	}
	clientVol := volume(t) // the client keeps nothing, but the image's /data wants a volume
	// A reader is consumed by the container it is copied into: one per container.
	token := func() []testcontainers.ContainerFile {
		return []testcontainers.ContainerFile{{Reader: strings.NewReader(cityToken), ContainerFilePath: "/tmp/token", FileMode: 0o644}}
	}
	out := oneShot(t, clientVol, token(), []string{nw.Name}, "client", "--server", "http://collider:8080", "--token-file", "/tmp/token", "leads")
	var leadIDs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 2 && f[1] == "620100" {
			leadIDs = append(leadIDs, f[0])
		}
		if len(f) > 2 && !strings.HasPrefix(f[0], "#") && f[1] != "620100" && !strings.Contains(sc.Text(), "level=") {
			t.Fatalf("the client sees another city's lead: %s", sc.Text())
		}
	}
	if len(leadIDs) == 0 {
		t.Fatalf("the client pulled no leads:\n%s", out)
	}
	out = oneShot(t, clientVol, token(), []string{nw.Name}, "client", "--server", "http://collider:8080", "--token-file", "/tmp/token", "act", leadIDs[0], "accept")
	if !strings.Contains(out, "lead "+leadIDs[0]+" accepted") {
		t.Fatalf("feedback: %s", out)
	}
	var events struct {
		Items []struct{ Action, UserName string }
	}
	s.call(t, "GET", "/api/v1/leads/"+leadIDs[0]+"/events", province, nil, &events)
	if n := len(events.Items); n != 2 || events.Items[1].Action != "accept" {
		t.Fatalf("events: %+v", events)
	}
	t.Logf("the client pulled %d leads by the alias and accepted lead %s", len(leadIDs), leadIDs[0])
}
