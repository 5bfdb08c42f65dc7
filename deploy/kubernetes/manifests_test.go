// Package kubernetes holds no code: its test checks that the manifests in
// this directory parse and hang together.
package kubernetes

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Resources []string `yaml:"resources"` // Kustomization
	Spec      struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		} `yaml:"template"`
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		ServiceName string `yaml:"serviceName"`
	} `yaml:"spec"`
}

func load(t *testing.T) map[string][]object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]object{}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(r)
		dec.KnownFields(false)
		for doc := 1; ; doc++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, doc, err)
			}
			if o.APIVersion == "" || o.Kind == "" || (o.Metadata.Name == "" && o.Kind != "Kustomization") {
				t.Fatalf("%s, document %d: missing apiVersion, kind or metadata.name", f, doc)
			}
			out[f] = append(out[f], o)
		}
		r.Close()
	}
	return out
}

func TestManifests(t *testing.T) {
	byFile := load(t)
	byKind := map[string]map[string]object{}
	for _, objs := range byFile {
		for _, o := range objs {
			if byKind[o.Kind] == nil {
				byKind[o.Kind] = map[string]object{}
			}
			if _, dup := byKind[o.Kind][o.Metadata.Name]; dup {
				t.Errorf("two %s named %s", o.Kind, o.Metadata.Name)
			}
			byKind[o.Kind][o.Metadata.Name] = o
		}
	}
	for _, want := range []struct{ kind, name string }{
		{"StatefulSet", "gridd"}, {"DaemonSet", "gridd-nodecache"}, {"Deployment", "gridd-worker"},
		{"HorizontalPodAutoscaler", "gridd-worker"}, {"NetworkPolicy", "default-deny"},
		{"Service", "gridd"}, {"Service", "gridd-peers"},
	} {
		if _, ok := byKind[want.kind][want.name]; !ok {
			t.Errorf("no %s %s", want.kind, want.name)
		}
	}
	// A selector that does not match its pod template is rejected by the
	// API server; catch it here.
	for _, kind := range []string{"StatefulSet", "DaemonSet", "Deployment"} {
		for name, o := range byKind[kind] {
			for k, v := range o.Spec.Selector.MatchLabels {
				if o.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("%s %s: selector %s=%s does not match the pod template", kind, name, k, v)
				}
			}
		}
	}
	for name, o := range byKind["HorizontalPodAutoscaler"] {
		ref := o.Spec.ScaleTargetRef
		if _, ok := byKind[ref.Kind][ref.Name]; !ok {
			t.Errorf("HPA %s scales %s %s, which is not defined", name, ref.Kind, ref.Name)
		}
	}
	for name, o := range byKind["StatefulSet"] {
		if _, ok := byKind["Service"][o.Spec.ServiceName]; !ok {
			t.Errorf("StatefulSet %s: service %q is not defined", name, o.Spec.ServiceName)
		}
	}
	// The kustomization lists every manifest.
	k := byFile["kustomization.yaml"]
	if len(k) != 1 {
		t.Fatal("kustomization.yaml must hold one document")
	}
	listed := map[string]bool{}
	for _, r := range k[0].Resources {
		listed[r] = true
		if _, ok := byFile[r]; !ok {
			t.Errorf("kustomization lists %s, which does not exist", r)
		}
	}
	for f := range byFile {
		if f != "kustomization.yaml" && !listed[f] {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
}
