package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
)

// runIn is run with standard input; it does not log standard output,
// which may be megabytes of payload.
func runIn(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd(func(string) (string, bool) { return "", false })
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(bytes.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := 0
	if err := root.ExecuteContext(context.Background()); err != nil {
		code = 1
		errOut.WriteString("gridctl: " + err.Error() + "\n")
	}
	t.Logf("gridctl %s (stdin %d bytes) -> %d\n%s", strings.Join(args, " "), len(stdin), code, errOut.String())
	return code, out.String(), errOut.String()
}

// payload is n bytes that are not text, so that a mangled copy shows.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	return b
}

// TestShared runs shared set, update, get and delete against a real
// 3-node cluster.
func TestShared(t *testing.T) {
	noLeaks(t)
	c := testcluster.Start(t, 3, testcluster.Options{})
	addr := strings.Join(c.Addrs(), ",")
	sid := createSession(t, c.Addrs()[0])
	dir := t.TempDir()

	// set from a file: 2.5 MiB, so the upload takes several chunks.
	v1 := payload(5<<19, 1)
	f1 := filepath.Join(dir, "v1.bin")
	if err := os.WriteFile(f1, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	out := ok(t, "--addr", addr, "shared", "set", sid, f1, "--ttl", "10m")
	sum := sha256.Sum256(v1)
	for _, line := range []string{"session  " + sid, "level    1", "size     2621440 bytes (2.5 MiB)",
		"sha256   " + hex.EncodeToString(sum[:])} {
		if !strings.Contains(out, line+"\n") {
			t.Fatalf("set output lacks %q:\n%s", line, out)
		}
	}
	exp := parse(t, ok(t, "--addr", addr, "-o", "json", "shared", "get", sid, "--info"), &griddpb.SharedDataInfo{})
	if exp.GetUpdateLevel() != 1 || exp.GetSize() != int64(len(v1)) || !bytes.Equal(exp.GetSha256(), sum[:]) {
		t.Fatalf("get --info -o json: %v", exp)
	}
	if left := time.Until(time.UnixMilli(exp.GetExpiresUnixMs())); left <= 0 || left > 11*time.Minute {
		t.Fatalf("--ttl 10m: expires in %v", left)
	}

	// get back the same bytes, to stdout and to a file.
	code, got, errOut := runIn(t, nil, "--addr", addr, "shared", "get", sid)
	if code != 0 || got != string(v1) {
		t.Fatalf("get: exit %d, %d bytes back, want the %d set", code, len(got), len(v1))
	}
	if !strings.HasPrefix(errOut, "gridctl: session "+sid+" level 1: 2621440 bytes (2.5 MiB), sha256 "+hex.EncodeToString(sum[:])) {
		t.Fatalf("get's description on stderr: %q", errOut)
	}

	// update from stdin twice: levels 2, then 5 as asked.
	v2, v5 := []byte("level two\n"), payload(1000, 5)
	code, out, _ = runIn(t, v2, "--addr", addr, "-o", "json", "shared", "update", sid)
	if info := parse(t, out, &griddpb.SharedDataInfo{}); code != 0 || info.GetUpdateLevel() != 2 || info.GetSize() != int64(len(v2)) {
		t.Fatalf("update: exit %d, %v", code, info)
	}
	code, out, _ = runIn(t, v5, "--addr", addr, "shared", "update", sid, "-", "--level", "5")
	if code != 0 || !strings.Contains(out, "level    5\n") {
		t.Fatalf("update --level 5: exit %d\n%s", code, out)
	}

	// an exact old level, to a file, with the description as JSON.
	f2 := filepath.Join(dir, "v2.bin")
	info := parse(t, ok(t, "--addr", addr, "-o", "json", "shared", "get", sid, "--level", "2", "--file", f2), &griddpb.SharedDataInfo{})
	if back, err := os.ReadFile(f2); err != nil || !bytes.Equal(back, v2) || info.GetUpdateLevel() != 2 {
		t.Fatalf("get --level 2 --file: %q, %v, %v", back, err, info)
	}
	if got := ok(t, "--addr", addr, "shared", "get", sid, "-q"); got != string(v5) {
		t.Fatalf("get the latest: %d bytes, want level 5's %d", len(got), len(v5))
	}
	if out := ok(t, "--addr", addr, "shared", "get", sid, "--info", "--level", "5"); !strings.Contains(out, "size     1000 bytes\n") {
		t.Fatalf("get --info:\n%s", out)
	}

	// bad input: one line on stderr, exit 1, nothing printed or stored.
	cases := []struct {
		name string
		args []string
		says string
	}{
		{"no session", []string{"shared", "set"}, "accepts between 1 and 2 arg(s), received 0"},
		{"empty session", []string{"shared", "get", ""}, "no session id"},
		{"level going backwards", []string{"shared", "update", sid, f1, "--level", "3"},
			"invalid argument: update_level 3 is not above the current level 5"},
		{"missing file", []string{"shared", "update", sid, filepath.Join(dir, "nope.bin")}, "read the payload: open " + filepath.Join(dir, "nope.bin") + ": no such file or directory"},
		{"set twice", []string{"shared", "set", sid, f1}, "already exists"},
		{"negative level", []string{"shared", "get", sid, "--level", "-1"}, "--level -1: want 0"},
		{"negative ttl", []string{"shared", "set", sid, f1, "--ttl", "-1s"}, "--ttl -1s"},
		{"level not written", []string{"shared", "get", sid, "--level", "9"}, "failed precondition"},
		{"level no longer kept", []string{"shared", "get", sid, "--level", "1", "--info"}, "not found"},
		{"info and file", []string{"shared", "get", sid, "--info", "--file", f2}, "not both"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, nil, append([]string{"--addr", addr}, tc.args...)...)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.says) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and one line saying %q", code, out, errOut, tc.says)
			}
		})
	}
	if got := ok(t, "--addr", addr, "shared", "get", sid); got != string(v5) {
		t.Fatal("a refused command changed the shared data")
	}

	// delete, then there is nothing to get or delete.
	if out := ok(t, "--addr", addr, "shared", "delete", sid); out != "shared data of session "+sid+" deleted\n" {
		t.Fatalf("delete: %q", out)
	}
	code, _, errOut = run(t, nil, "--addr", addr, "shared", "get", sid)
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("get after delete: exit %d, %q", code, errOut)
	}
	resp := parse(t, ok(t, "--addr", addr, "-o", "json", "shared", "delete", sid), &griddpb.DeleteSharedDataResponse{})
	if resp.GetDeleted() {
		t.Fatal("a second delete says it deleted something")
	}
	if out := ok(t, "--addr", addr, "shared", "delete", sid); out != "session "+sid+" had no shared data\n" {
		t.Fatalf("delete of nothing: %q", out)
	}

	// The bar sees the bytes of real streams, both ways (a terminal
	// enables it in gridctl; here it is switched on).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var bar bytes.Buffer
	tr := newTransfer(&bar, true)
	cl, err := client.Dial(ctx, c.Addrs(), client.WithDialOptions(tr.dialOption()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.SetSharedData(ctx, sid, 0, payload(5<<20, 7), 0); err != nil {
		t.Fatal(err)
	}
	tr.finish()
	if !strings.Contains(bar.String(), "5.0/5.0 MiB 100.0%") {
		t.Fatalf("upload bar %q", bar.String())
	}
	bar.Reset()
	if _, _, err := cl.GetSharedData(ctx, sid, 0); err != nil {
		t.Fatal(err)
	}
	tr.finish()
	if !strings.Contains(bar.String(), "5.0/5.0 MiB 100.0%") {
		t.Fatalf("download bar %q", bar.String())
	}
}

func TestBytesLine(t *testing.T) {
	got := bytesLine(3<<20, 12<<20, 0, 1.5*(1<<20), 2*time.Second)
	want := "[======>                 ] 3.0/12.0 MiB  25.0%  1.5 MiB/s  ETA 6s  elapsed 2s"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// TestTransferBar: the bar counts payload bytes, starts again when a retry
// sends the header again, and stays off for small payloads.
func TestTransferBar(t *testing.T) {
	var b bytes.Buffer
	tr := newTransfer(&b, true)
	header := &griddpb.SharedDataChunk{Header: &griddpb.SharedDataHeader{Size: 8 << 20}, Data: make([]byte, 1<<20)}
	tr.count(header)
	tr.count(&griddpb.SharedDataChunk{Data: make([]byte, 1<<20)})
	tr.count(header) // a failover: the upload starts over
	for range 7 {
		tr.count(&griddpb.SharedDataChunk{Data: make([]byte, 1<<20)})
	}
	tr.finish()
	if out := b.String(); !strings.Contains(out, "8.0/8.0 MiB 100.0%") || !strings.HasSuffix(out, "\n") ||
		strings.Contains(out, "9.0/8.0") {
		t.Fatalf("bar output %q", out)
	}
	b.Reset()
	tr = newTransfer(&b, true)
	tr.count(&griddpb.SharedDataChunk{Header: &griddpb.SharedDataHeader{Size: 1 << 20}, Data: make([]byte, 1<<20)})
	tr.finish()
	if b.Len() != 0 {
		t.Fatalf("a 1 MiB transfer drew a bar: %q", b.String())
	}
}
