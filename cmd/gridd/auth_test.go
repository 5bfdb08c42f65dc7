package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenNodeStaysOnLoopback: without keys, a non-loopback listener needs
// --insecure, and a keys file that does not load stops the start; each
// refusal is one line naming what to change, before the data dir exists.
func TestOpenNodeStaysOnLoopback(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "never-created")
	badKeys := filepath.Join(tmp, "keys.yaml")
	if err := os.WriteFile(badKeys, []byte("- {name: a, hash: nope, role: admin}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", dir, "--grpc-addr", "0.0.0.0:0", "--advertise-grpc-addr", "h:1", "--metrics-addr", ""},
			"--insecure"},
		{[]string{"--data-dir", dir, "--cache-addr", "10.0.0.1:0", "--metrics-addr", ""}, "--api-keys-file"},
		{[]string{"--data-dir", dir, "--api-keys-file", badKeys}, "not a bcrypt hash"},
		{[]string{"--data-dir", dir, "--api-keys-file", filepath.Join(tmp, "missing.yaml")}, "read the API keys file"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), c.args, noEnv, &out, &errOut)
		msg := errOut.String()
		if code != 1 || !strings.Contains(msg, c.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line saying %q", c.args, code, msg, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%v: the data dir was created before the settings were checked", c.args)
		}
	}
	for _, host := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		if !loopback(host) {
			t.Errorf("%s is loopback", host)
		}
	}
	for _, host := range []string{":1", "0.0.0.0:1", "10.1.2.3:1", "example.com:1"} {
		if loopback(host) {
			t.Errorf("%s is not loopback", host)
		}
	}
}
