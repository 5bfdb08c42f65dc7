// Package deploy_test checks the monitoring files shipped in deploy/: they
// parse, have the shape Prometheus and Grafana expect, and use only metrics
// that docs/metrics.md documents (and server's scrape test checks exist).
package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var metricRE = regexp.MustCompile(`\bgridd_[a-z0-9_]+`)

// documented returns the metric names in docs/metrics.md's tables.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `gridd_") {
			names[strings.Trim(strings.Fields(line)[1], "`")] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d metrics found in docs/metrics.md", len(names))
	}
	return names
}

// checkNames fails for metrics in expr that the docs do not list. Node
// cache metrics are documented in cache/metrics.go.
func checkNames(t *testing.T, where, expr string, docs map[string]bool) {
	t.Helper()
	for _, m := range metricRE.FindAllString(expr, -1) {
		if strings.HasPrefix(m, "gridd_nodecache_") {
			continue
		}
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && docs[b] {
				base = b
			}
		}
		if !docs[base] {
			t.Errorf("%s uses %s, which docs/metrics.md does not document", where, m)
		}
	}
}

func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key would be ignored by Prometheus
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	docs := documented(t)
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("group %s: rule %q lacks alert, expr, severity or summary", g.Name, r.Alert)
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			checkNames(t, r.Alert, r.Expr, docs)
		}
	}
	for _, want := range []string{"GriddLeaderMissing", "GriddNoQuorum", "GriddQueueDepthHigh", "GriddGRPCErrorRate"} {
		if !alerts[want] {
			t.Errorf("alert %s missing", want)
		}
	}
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/gridd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("gridd-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard without title or uid")
	}
	docs := documented(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkNames(t, "panel "+p.Title, tg.Expr, docs)
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(m, "_bucket")] = true
			}
		}
	}
	// Every documented gridd metric has a panel, except the ones that only
	// serve alerts.
	for name := range docs {
		switch name {
		case "gridd_raft_leader_known", "gridd_sessions", "gridd_tasks_retried_total":
			continue
		}
		if !used[name] && !used[name+"_sum"] {
			t.Errorf("no panel shows %s", name)
		}
	}
}
