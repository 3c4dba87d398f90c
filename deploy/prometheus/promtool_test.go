// The shipped alert rules, checked and unit-tested by Prometheus' own
// promtool: `promtool check rules alerts.yml` and `promtool test rules
// alerts_test.yml`. Debian's prometheus package carries promtool; .ci/run
// installs it and sets COLLIDER_REQUIRE_PROMTOOL=1, under which a missing
// promtool fails instead of skipping.
package prometheus

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("COLLIDER_REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("promtool is not installed (Debian: apt-get install prometheus): %v", err)
		}
		t.Skipf("promtool is not installed (Debian: apt-get install prometheus; .ci/run does): %v", err)
	}
	return path
}

func TestPromtool_AlertRulesCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", "alerts.yml").CombinedOutput()
	t.Logf("promtool check rules alerts.yml:\n%s", out)
	if err != nil {
		t.Fatalf("promtool check rules: %v", err)
	}
	if n := len(shippedAlerts(t)); !strings.Contains(string(out), "SUCCESS: ") || n < 7 {
		t.Fatalf("promtool found no rules, or the file has %d alerts", n)
	}
}

// Every shipped alert is unit-tested firing and quiet, among them "no
// successful run in 26 h" and "a delivery failed", and every test passes.
func TestPromtool_AlertRulesFireOnSyntheticSeries(t *testing.T) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "alerts_test.yml", &tests)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName] = true
			} else {
				quiet[a.AlertName] = true
			}
		}
	}
	for _, name := range shippedAlerts(t) {
		if !fires[name] || !quiet[name] {
			t.Errorf("alerts_test.yml tests %s firing: %v, quiet: %v; it needs both", name, fires[name], quiet[name])
		}
	}
	for _, name := range []string{"ColliderNoSuccessfulRun", "ColliderDeliveryFailed"} {
		if !fires[name] {
			t.Errorf("alerts_test.yml never fires %s", name)
		}
	}

	out, err := exec.Command(promtool(t), "test", "rules", "alerts_test.yml").CombinedOutput()
	t.Logf("promtool test rules alerts_test.yml:\n%s", out)
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v", err)
	}
}

func shippedAlerts(t *testing.T) []string {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, "alerts.yml", &rules)
	var out []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r.Alert)
			}
		}
	}
	return out
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
