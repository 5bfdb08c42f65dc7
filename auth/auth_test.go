package auth

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func hash(t *testing.T, k string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(k), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParse(t *testing.T) {
	h := hash(t, "a-key-of-sixteen-chars")
	good := "- {name: a, hash: '" + h + "', role: client, apps: [A, B]}\n- {name: w, hash: '" + h + "', role: worker, apps: ['*']}\n"
	keys, err := Parse([]byte(good))
	if err != nil || len(keys) != 2 || keys[0].Apps[1] != "B" {
		t.Fatalf("parse: %v %v", keys, err)
	}
	if keys, err := Parse([]byte("keys:\n" + good)); err != nil || len(keys) != 2 {
		t.Fatalf("parse under keys: %v %v", keys, err)
	}
	bad := map[string]string{
		"":            "no keys",
		"- {name: a}": "not a bcrypt hash",
		"- {hash: x}": "name is empty",
		"[1, 2":       "not a YAML list",
		"- {name: a, hash: '" + h + "', role: root}":                                               "role \"root\"",
		"- {name: a, hash: '" + h + "', role: client}":                                             "apps is empty",
		"- {name: a, hash: '" + h + "', role: worker, apps: [A]}":                                  "worker keys serve every app",
		"- {name: a, hash: '" + h + "', role: admin}\n- {name: a, hash: '" + h + "', role: admin}": "name used twice",
	}
	for in, want := range bad {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want an error saying %q", in, err, want)
		}
	}
}

func TestVerifyCachesAndReloads(t *testing.T) {
	now := time.Unix(1000, 0)
	a, err := New([]Key{{Name: "a", Hash: hash(t, "key-a-0123456789"), Role: RoleClient, Apps: []string{"A"}}},
		Options{TTL: time.Minute, MaxEntries: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Verify("key-a-0123456789")
	if err != nil || id.Name != "a" || !id.AllowsApp("A") || id.AllowsApp("B") {
		t.Fatalf("verify: %+v %v", id, err)
	}
	if _, err := a.Verify(""); err != ErrMissingKey {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := a.Verify("wrong-0123456789"); err != ErrUnknownKey {
		t.Fatalf("wrong key: %v", err)
	}
	// A cached verdict is reused: swap the configured hash behind the
	// cache's back, and the old verdict still answers until its TTL.
	a.mu.Lock()
	a.keys = []Key{{Name: "a", Hash: hash(t, "other-0123456789"), Role: RoleClient, Apps: []string{"A"}}}
	a.mu.Unlock()
	if _, err := a.Verify("key-a-0123456789"); err != nil {
		t.Fatalf("cached verdict not used: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := a.Verify("key-a-0123456789"); err != ErrUnknownKey {
		t.Fatalf("expired verdict still used: %v", err)
	}
	// Reload revokes at once.
	if err := a.Reload([]Key{{Name: "b", Hash: hash(t, "key-b-0123456789"), Role: RoleAdmin}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify("other-0123456789"); err != ErrUnknownKey {
		t.Fatalf("key removed by reload still works: %v", err)
	}
	if id, err := a.Verify("key-b-0123456789"); err != nil || !id.AllowsApp("anything") {
		t.Fatalf("admin after reload: %+v %v", id, err)
	}
	// The cache stays bounded whatever callers send.
	for i := range 10 {
		_, _ = a.Verify(strings.Repeat("x", 16+i))
	}
	if n := len(a.cache); n > 3 {
		t.Fatalf("cache holds %d verdicts; the bound is 3", n)
	}
}

func TestAllowed(t *testing.T) {
	cases := []struct {
		role   Role
		method string
		want   bool
	}{
		{RoleClient, "/gridd.v1.Queue/CreateSession", true},
		{RoleClient, "/gridd.v1.Queue/WorkerStream", false},
		{RoleClient, "/gridd.v1.Cluster/Remove", false},
		{RoleWorker, "/gridd.v1.Queue/WorkerStream", true},
		{RoleWorker, "/gridd.v1.Cache/GetSharedData", true},
		{RoleWorker, "/gridd.v1.Cache/SetSharedData", false},
		{RoleNode, "/gridd.v1.Cluster/Join", true},
		{RoleNode, "/gridd.v1.Cluster/Remove", false},
		{RoleAdmin, "/gridd.v1.Cluster/Remove", true},
		{RoleClient, "/gridd.v1.Cluster/SomethingNew", false},
	}
	for _, c := range cases {
		if got := Allowed(c.role, c.method); got != c.want {
			t.Errorf("Allowed(%s, %s) = %v; want %v", c.role, c.method, got, c.want)
		}
	}
}

func TestHash(t *testing.T) {
	h, err := Hash("a-long-enough-key-123\n")
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("a-long-enough-key-123")) != nil {
		t.Fatal("hash does not match its key")
	}
	if _, err := Hash("short"); err == nil {
		t.Fatal("short key accepted")
	}
}
