package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestoreBadInput: every mistake gets an error naming it, and leaves
// the data dir untouched.
func TestRestoreBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.snap")
	if err := os.WriteFile(junk, []byte("not a snapshot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"restore", "--data-dir", data, "--id", "n1"}, "--snapshot is required"},
		{[]string{"restore", "--snapshot", junk, "--id", "n1"}, "--data-dir is required"},
		{[]string{"restore", "--snapshot", junk, "--data-dir", data}, "--id is required"},
		{[]string{"restore", "--snapshot", junk, "--data-dir", data, "--id", "n 1"}, "--id"},
		{[]string{"restore", "--snapshot", filepath.Join(dir, "missing"), "--data-dir", data, "--id", "n1"}, "open the snapshot"},
		{[]string{"restore", "--snapshot", junk, "--data-dir", data, "--id", "n1"}, "not a gridd snapshot file"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := execute(t.Context(), c.args, noEnv, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("gridd %s: exit %d, stderr %q; want an error with %q", strings.Join(c.args, " "), code, errOut.String(), c.want)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a failed restore created %s (%v)", data, err)
	}
}
