package main

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestExistingAndComposeArgs(t *testing.T) {
	var cmds []string
	run := func(_ context.Context, name string, args ...string) (string, error) {
		cmds = append(cmds, name+" "+strings.Join(args, " "))
		if strings.Contains(strings.Join(args, " "), "name=^/?gridd-n2$") {
			return "3f2a\n", nil
		}
		return "", nil
	}
	found, err := existing(context.Background(), run, []string{"gridd-n1", "gridd-n2"})
	if err != nil || !reflect.DeepEqual(found, []string{"gridd-n2"}) {
		t.Fatalf("existing = %v, %v", found, err)
	}
	cmds = nil
	c := &compose{run: run, bin: "docker", file: "dc.yml", project: "p", services: []string{"n1", "n2"}}
	if err := c.up(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"docker compose -p p -f dc.yml down -v --remove-orphans",
		"docker compose -p p -f dc.yml up -d --force-recreate --renew-anon-volumes n1 n2"}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("up ran %q, want %q", cmds, want)
	}
}

func TestParseContainers(t *testing.T) {
	m, order, err := parseContainers("n1=a,n2=b")
	if err != nil || m["n2"] != "b" || !reflect.DeepEqual(order, []string{"n1", "n2"}) {
		t.Fatalf("parseContainers = %v %v %v", m, order, err)
	}
	if _, _, err := parseContainers("n1"); err == nil {
		t.Fatal("n1 without a container accepted")
	}
}
