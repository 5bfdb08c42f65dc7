package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// upperWorker runs an SDK worker that answers a task with its payload in
// upper case, fails every attempt of a task whose payload says "fail", and
// runs a task whose payload is "hang" until it is told to stop.
// It stops at the end of the test.
func upperWorker(t *testing.T, addrs []string, id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := worker.Run(ctx, worker.Options{Addrs: addrs, WorkerID: id, Concurrency: 4, DrainTimeout: time.Second},
			func(hctx context.Context, task worker.Task) ([]byte, error) {
				if string(task.Payload) == "hang" {
					<-hctx.Done()
					return nil, hctx.Err()
				}
				if bytes.Contains(task.Payload, []byte("fail")) {
					return nil, errors.New("asked to fail")
				}
				if !utf8.Valid(task.Payload) {
					return task.Payload, nil // ToUpper would replace the invalid bytes
				}
				return bytes.ToUpper(task.Payload), nil
			})
		if err != nil {
			t.Errorf("worker %s: %v", id, err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// writeFile writes content to a file in the test's temporary dir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// submitLive is the cluster the steps of TestSubmitAndOperate share.
type submitLive struct {
	c    *testcluster.Cluster
	addr string // every address, comma-separated
}

// TestSubmitAndOperate runs submit, session watch, dlq and workers list
// against a real 3-node cluster with a real SDK worker.
func TestSubmitAndOperate(t *testing.T) {
	noLeaks(t)
	c := testcluster.Start(t, 3, testcluster.Options{})
	upperWorker(t, c.Addrs(), "w-upper")
	l := &submitLive{c: c, addr: strings.Join(c.Addrs(), ",")}
	steps := []struct {
		name string
		run  func(*testing.T, *submitLive)
	}{
		{"submit lines", testSubmitLines},
		{"submit json ordered, golden", testSubmitJSONOrdered},
		{"submit stdin to an existing session", testSubmitStdin},
		{"dead letters exit 2", testSubmitDeadLetters},
		{"bad input", testSubmitBadInput},
		{"workers list", testWorkersList},
		{"dlq list, retry, purge", testDLQ},
		{"task show and cancel", testTaskShowCancel},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, l) }) {
			return
		}
	}
}

func testSubmitLines(t *testing.T, l *submitLive) {
	var in strings.Builder
	for i := range 200 {
		in.WriteString("task ")
		in.WriteString(strings.Repeat("x", i%7))
		in.WriteString("\n")
	}
	code, out, errOut := run(t, nil, "--addr", l.addr, "submit", "--batch", "17", "--close", writeFile(t, "tasks.txt", in.String()))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 200 {
		t.Fatalf("want 200 result lines, got %d", len(lines))
	}
	seen := map[string]bool{}
	for _, ln := range lines {
		id, payload, ok := strings.Cut(ln, "\t")
		if !ok || !strings.HasPrefix(payload, "TASK ") || seen[id] {
			t.Fatalf("bad or repeated result line %q", ln)
		}
		seen[id] = true
	}
	if !seen["1"] || !seen["200"] {
		t.Fatalf("ids are not the line numbers: %v", seen)
	}
	if !strings.Contains(errOut, "200 results, 0 dead-lettered, 0 cancelled (closed)") {
		t.Fatalf("no summary on stderr: %q", errOut)
	}
}

// submitGolden is submit -o json --ordered for the input of
// testSubmitJSONOrdered: input order, payload_b64 for bytes that are not
// UTF-8, one object per line.
const submitGolden = `{"id":"a","payload":"ALPHA","attempt":1}
{"id":"b","payload":"","attempt":1}
{"id":"c","payload":"Ω BETA","attempt":1}
{"id":"d","payload_b64":"/wA=","attempt":1}
{"id":"e","payload":"{\"X\":1}","attempt":1}
`

func testSubmitJSONOrdered(t *testing.T, l *submitLive) {
	in := `{"id": "a", "payload": "alpha"}
{"id": "b", "payload": ""}

{"id": "c", "payload": "Ω beta"}
{"id": "d", "payload_b64": "/wA="}
{"id": "e", "payload": "{\"x\":1}"}
`
	code, out, errOut := run(t, nil, "--addr", l.addr, "-o", "json", "submit", "--json", "--ordered", "--quiet",
		"--close", "--batch", "2", writeFile(t, "tasks.jsonl", in))
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if out != submitGolden {
		t.Fatalf("output\n%s\nwant\n%s", out, submitGolden)
	}
}

// testSubmitStdin submits from standard input to a session made
// beforehand, then follows it with session watch.
func testSubmitStdin(t *testing.T, l *submitLive) {
	sid := createSession(t, l.c.Addrs()[0])
	root := newRootCmd(func(string) (string, bool) { return "", false })
	var out, errOut bytes.Buffer
	root.SetArgs([]string{"--addr", l.addr, "submit", "-", "--session", sid, "--ordered"})
	root.SetIn(strings.NewReader("one\ntwo\nthree\n"))
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("submit: %v\n%s", err, errOut.String())
	}
	if want := "1\tONE\n2\tTWO\n3\tTHREE\n"; out.String() != want {
		t.Fatalf("stdout %q, want %q", out.String(), want)
	}
	// The session is left open: watch sees every task done and stops.
	code, jout, _ := run(t, nil, "--addr", l.addr, "-o", "json", "session", "watch", sid)
	var w watchLine
	if err := json.Unmarshal([]byte(strings.TrimSpace(jout)), &w); code != 0 || err != nil {
		t.Fatalf("exit %d, watch -o json output %q: %v", code, jout, err)
	}
	if w.Session != sid || w.Submitted != 3 || w.Done != 3 || w.Pending != 0 || w.ETASeconds != 0 || w.State != "open" {
		t.Fatalf("watch says %+v", w)
	}
	table := ok(t, "--addr", l.addr, "session", "watch", sid)
	if !strings.Contains(table, "3/3 100.0%") || !strings.Contains(table, "failed 0") {
		t.Fatalf("watch table: %q", table)
	}
	// Submitting the same ids again is harmless: they are duplicates whose
	// results were delivered already, and submit ends instead of waiting.
	code, out2, errOut2 := run(t, nil, "--addr", l.addr, "submit", "--session", sid, writeFile(t, "again.txt", "one\ntwo\n"))
	if code != 0 || out2 != "" || !strings.Contains(errOut2, "2 tasks were already in session") {
		t.Fatalf("resubmit: exit %d, stdout %q, stderr %q", code, out2, errOut2)
	}
	ok(t, "--addr", l.addr, "session", "close", sid)
}

func testSubmitDeadLetters(t *testing.T, l *submitLive) {
	in := "fine\nplease fail\nalso fine\n"
	code, out, errOut := run(t, nil, "--addr", l.addr, "submit", "--max-attempts", "1", "--ordered", "--close",
		writeFile(t, "some-fail.txt", in))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr %q", code, errOut)
	}
	if out != "1\tFINE\n3\tALSO FINE\n" {
		t.Fatalf("stdout %q", out)
	}
	for _, s := range []string{"task 2 dead-lettered after 1 attempts: asked to fail", "gridctl: 1 of 3 tasks dead-lettered"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr lacks %q:\n%s", s, errOut)
		}
	}
	// -o json reports the dead letter on stderr as one object.
	code, _, errOut = run(t, nil, "--addr", l.addr, "-o", "json", "submit", "--max-attempts", "1", "--quiet", "--close",
		writeFile(t, "fail.txt", "fail me\n"))
	first, _, _ := strings.Cut(errOut, "\n")
	if code != 2 || first != `{"id":"1","payload":"fail me","attempt":1,"dead_letter":true,"errors":["asked to fail"]}` {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func testSubmitBadInput(t *testing.T, l *submitLive) {
	cases := []struct {
		name, in string
		args     []string
		says     string
	}{
		{"repeated id", "{\"id\":\"x\",\"payload\":\"1\"}\n{\"id\":\"x\",\"payload\":\"2\"}\n", []string{"--json"}, `line 2: task id "x" repeats line 1`},
		{"no id", "{\"payload\":\"1\"}\n", []string{"--json"}, `line 1: the task has no "id"`},
		{"unknown field", "{\"id\":\"x\",\"data\":\"1\"}\n", []string{"--json"}, `line 1: want {"id"`},
		{"attributes with --session", "a\n", []string{"--session", "s1", "--priority", "3"}, "with --session use gridctl session update"},
		{"unknown session", "a\n", []string{"--session", "no-such-session"}, "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--addr", l.addr, "submit", writeFile(t, "in", tc.in)}, tc.args...)
			code, out, errOut := run(t, nil, args...)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.says) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, tc.says)
			}
		})
	}
}

func testWorkersList(t *testing.T, l *submitLive) {
	var resp *griddpb.ListWorkersResponse
	waitFor(t, "the worker in workers list", func() bool {
		resp = parse(t, ok(t, "--addr", l.addr, "-o", "json", "workers", "list"), &griddpb.ListWorkersResponse{})
		return len(resp.GetWorkers()) == 1
	})
	if w := resp.GetWorkers()[0]; w.GetId() != "w-upper" || !w.GetRegistered() || w.GetConnectedUnixMs() == 0 {
		t.Fatalf("worker info %v", w)
	}
	table := ok(t, "--addr", l.addr, "workers", "list")
	if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, "w-upper") || !strings.Contains(table, "REGISTERED") {
		t.Fatalf("table:\n%s", table)
	}
}

// testDLQ makes dead letters that nobody consumes (an SDK session that
// detaches right after submitting), then lists, retries and purges them.
func testDLQ(t *testing.T, l *submitLive) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, l.c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 1}, client.WithApp("dlq-test"))
	if err != nil {
		t.Fatal(err)
	}
	sid := s.ID()
	if _, err := s.Submit(ctx, []client.Task{{ID: "f1", Payload: []byte("fail 1")},
		{ID: "f2", Payload: []byte("fail 2")}, {ID: "f3", Payload: []byte("fail 3")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	// dlqTotal is -1 when the call failed: the polls below ride out a
	// leader election that a loaded machine can cause.
	dlqTotal := func() int {
		code, out, _ := run(t, nil, "--addr", l.addr, "-o", "json", "dlq", "list", sid)
		if code != 0 {
			return -1
		}
		return int(parse(t, out, &griddpb.ListDeadLettersResponse{}).GetTotal())
	}
	waitFor(t, "3 dead letters", func() bool { return dlqTotal() == 3 })

	resp := parse(t, ok(t, "--addr", l.addr, "-o", "json", "dlq", "list", sid, "--limit", "2"), &griddpb.ListDeadLettersResponse{})
	if len(resp.DeadLetters) != 2 || resp.Total != 3 {
		t.Fatalf("list --limit 2: %v", resp)
	}
	if m := resp.DeadLetters[0]; m.Attempt != 1 || len(m.Errors) != 1 || m.Errors[0] != "asked to fail" || !strings.HasPrefix(string(m.Payload), "fail ") {
		t.Fatalf("dead letter %v", m)
	}
	table := ok(t, "--addr", l.addr, "dlq", "list", sid, "--limit", "2")
	if !strings.Contains(table, "LAST ERROR") || !strings.Contains(table, "asked to fail") || !strings.Contains(table, "(2 of 3 shown") {
		t.Fatalf("table:\n%s", table)
	}

	// Retry one: it runs again (and fails again, the worker insists), so
	// it comes back as a dead letter with a second attempt.
	out := ok(t, "--addr", l.addr, "dlq", "retry", sid, "f2")
	if out != "1 dead letters of session "+sid+" requeued\n" {
		t.Fatalf("retry: %q", out)
	}
	waitFor(t, "f2 dead again", func() bool {
		code, out, _ := run(t, nil, "--addr", l.addr, "-o", "json", "session", "show", sid)
		if code != 0 {
			return false
		}
		c := parse(t, out, &griddpb.Session{}).GetCounts()
		return c.GetPending() == 0 && c.GetDeadLettered() == 3 && dlqTotal() == 3
	})
	purged := parse(t, ok(t, "--addr", l.addr, "-o", "json", "dlq", "purge", sid, "f1"), &griddpb.PurgeDeadLettersResponse{})
	if purged.Purged != 1 || dlqTotal() != 2 {
		t.Fatalf("purge f1: %v", purged)
	}
	if out := ok(t, "--addr", l.addr, "dlq", "purge", sid); out != "2 dead letters of session "+sid+" dropped\n" {
		t.Fatalf("purge all: %q", out)
	}
	if dlqTotal() != 0 {
		t.Fatal("dead letters left after purge")
	}
	code, _, errOut := run(t, nil, "--addr", l.addr, "dlq", "list", "no-such-session")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown session: exit %d, %q", code, errOut)
	}
	ok(t, "--addr", l.addr, "session", "close", sid)
}

// testTaskShowCancel: task show reports a running task and its worker,
// task cancel cancels it, and a submit waiting for it stops waiting and
// exits 2; session show counts it.
func testTaskShowCancel(t *testing.T, l *submitLive) {
	sid := createSession(t, l.c.Addrs()[0])
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := run(t, nil, "--addr", l.addr, "submit", "--quiet", "--session", sid,
			writeFile(t, "hang.txt", "a\nhang\n"))
		done <- result{code, out, errOut}
	}()
	var infos *griddpb.GetTasksResponse
	waitFor(t, "task 2 running", func() bool {
		code, out, _ := run(t, nil, "--addr", l.addr, "-o", "json", "task", "show", "--session", sid, "1", "2", "nope")
		if code != 0 {
			return false
		}
		infos = parse(t, out, &griddpb.GetTasksResponse{})
		return infos.GetTasks()[1].GetState() == griddpb.TaskState_TASK_STATE_RUNNING
	})
	if ts := infos.GetTasks(); len(ts) != 3 || ts[1].GetWorkerId() != "w-upper" ||
		ts[2].GetState() != griddpb.TaskState_TASK_STATE_NOT_FOUND {
		t.Fatalf("task show: %v", infos)
	}
	table := ok(t, "--addr", l.addr, "task", "show", "--session", sid, "2", "nope")
	for _, s := range []string{"ID ", "STATE", "WORKER", "running", "w-upper", "not found"} {
		if !strings.Contains(table, s) {
			t.Fatalf("task show table lacks %q:\n%s", s, table)
		}
	}
	if out := ok(t, "--addr", l.addr, "task", "cancel", "--session", sid, "2"); out != "1 tasks of session "+sid+" cancelled\n" {
		t.Fatalf("task cancel printed %q", out)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("submit still waits for a cancelled task")
	}
	if r.code != 2 || r.out != "1\tA\n" || !strings.Contains(r.errOut, "task 2 was cancelled") ||
		!strings.Contains(r.errOut, "1 of 2 tasks cancelled") {
		t.Fatalf("submit: exit %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
	}
	resp := parse(t, ok(t, "--addr", l.addr, "-o", "json", "task", "cancel", "--session", sid, "--all"),
		&griddpb.CancelTasksResponse{})
	if resp.GetCancelled() != 0 {
		t.Fatalf("cancel --all with nothing left cancelled %d", resp.GetCancelled())
	}
	detail := ok(t, "--addr", l.addr, "session", "show", sid)
	for _, s := range []string{"tasks cancelled                    1", "tasks completed                    1", "tasks retrying", "attempts timed out"} {
		if !strings.Contains(detail, s) {
			t.Fatalf("session show lacks %q:\n%s", s, detail)
		}
	}
	for _, args := range [][]string{
		{"task", "cancel", "--session", sid},
		{"task", "cancel", "--session", sid, "--all", "1"},
		{"task", "cancel", "1"},
		{"task", "show", "1"},
	} {
		code, _, errOut := run(t, nil, append([]string{"--addr", l.addr}, args...)...)
		if code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("%v: exit %d, stderr %q; want 1 and one line", args, code, errOut)
		}
	}
}
