package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/leakcheck"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/worker"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestCountWords(t *testing.T) {
	got := CountWords("The keeper's book, the KEEPER's pen; don't 'quote' 42 ships—twice’s")
	want := map[string]int{"the": 2, "keeper's": 2, "book": 1, "pen": 1, "don't": 1, "quote": 1,
		"42": 1, "ships": 1, "twice's": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("CountWords = %v, want %v", got, want)
	}
}

// The counts of the chunks add up to the direct count of the whole text,
// whatever the chunk size.
func TestChunkedCountEqualsDirectCount(t *testing.T) {
	direct := CountWords(story)
	if len(story) < 3000 || len(direct) < 200 {
		t.Fatalf("the shipped story is too small: %d bytes, %d words", len(story), len(direct))
	}
	texts := []string{story, "a", "", "supercalifragilistic word", "  lead\nand trail  ", "héllo wörld ünïcode"}
	for _, text := range texts {
		direct := CountWords(text)
		for _, size := range []int{1, 2, 7, 64, 512, 1 << 20} {
			chunks := Chunks(text, size)
			if strings.Join(chunks, "") != text {
				t.Fatalf("size %d: chunks do not rebuild the text", size)
			}
			sum := map[string]int{}
			for _, ch := range chunks {
				if len(ch) == 0 {
					t.Fatalf("size %d: empty chunk", size)
				}
				for w, n := range CountWords(ch) {
					sum[w] += n
				}
			}
			if !maps.Equal(sum, direct) {
				t.Errorf("size %d, text %.20q: chunked count differs from the direct count", size, text)
			}
		}
	}
}

func TestTop(t *testing.T) {
	got := Top(map[string]int{"b": 2, "a": 2, "c": 5, "d": 1}, 3)
	want := []WordCount{{"c", 5}, {"a", 2}, {"b", 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Top = %v, want %v", got, want)
	}
}

func TestHandle(t *testing.T) {
	out, err := Handle(context.Background(), worker.Task{Payload: []byte("one two two")})
	var m map[string]int
	if err != nil || json.Unmarshal(out, &m) != nil || m["two"] != 2 || m["one"] != 1 {
		t.Fatalf("Handle: %s, %v", out, err)
	}
	if _, err := Handle(context.Background(), worker.Task{Payload: []byte{0xff, 0xfe}}); err == nil {
		t.Fatal("binary payload accepted")
	}
}

// The command end to end against a real one-node cluster: the distributed
// count of a file equals the direct count.
func TestWorkerAndClient(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	addr := strings.Join(c.Addrs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	var wlog bytes.Buffer // read only after the worker returned
	workerDone := make(chan int, 1)
	go func() {
		workerDone <- run(wctx, []string{"worker", "--addr", addr, "--log-level", "warn"}, &wlog, &wlog)
	}()
	defer func() {
		stopWorker()
		if wcode := <-workerDone; wcode != 0 {
			t.Errorf("worker exited %d: %s", wcode, wlog.String())
		}
	}()

	// The shipped story, in many small chunks.
	var out, errs bytes.Buffer
	if code := run(ctx, []string{"client", "--addr", addr, "--chunk", "200"}, &out, &errs); code != 0 {
		t.Fatalf("client exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	var want strings.Builder
	for k, wc := range Top(CountWords(story), 10) {
		fmt.Fprintf(&want, "%4d  %-20s  %6d\n", k+1, wc.Word, wc.Count)
	}
	if !strings.HasSuffix(out.String(), want.String()) {
		t.Errorf("top 10 differs from the direct count:\ngot:\n%s\nwant:\n%s", out.String(), want.String())
	}
	if !strings.Contains(errs.String(), "100%  ") {
		t.Errorf("no final progress line:\n%s", errs.String())
	}

	// A file of our own.
	path := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(path, []byte(strings.Repeat("alpha beta\nbeta gamma ", 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(ctx, []string{"client", "--addr", addr, "--file", path, "--chunk", "100", "--quiet"}, &out, &errs); code != 0 {
		t.Fatalf("client --file exited %d: %s", code, errs.String())
	}
	for _, line := range []string{"1200 words, 3 distinct", "   1  beta                     600\n", "   2  alpha                    300\n"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errs bytes.Buffer
	for _, args := range [][]string{nil, {"bogus"}, {"client", "--chunk", "0"}} {
		if code := run(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	if code := run(context.Background(), []string{"client", "--file", "/nonexistent"}, &out, &errs); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}
