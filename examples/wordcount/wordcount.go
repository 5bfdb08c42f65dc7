package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// CountWords counts the words of text: runs of letters and digits,
// lower-cased, keeping an apostrophe between two letters ("don't").
// It is both the map step and, on the whole text, the reference the tests
// compare the distributed count with.
func CountWords(text string) map[string]int {
	counts := make(map[string]int)
	var word strings.Builder
	flush := func() {
		if word.Len() > 0 {
			counts[word.String()]++
			word.Reset()
		}
	}
	for i, r := range text {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			word.WriteRune(unicode.ToLower(r))
		case (r == '\'' || r == '’') && word.Len() > 0 && nextIsLetter(text[i+utf8.RuneLen(r):]):
			word.WriteByte('\'')
		default:
			flush()
		}
	}
	flush()
	return counts
}

func nextIsLetter(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsLetter(r)
}

// Chunks cuts text into pieces of about size bytes, each ending just after
// an ASCII space or line break, so that no word is split between two map
// tasks (the counts of the pieces then add up to the count of the whole).
// A piece is longer than size only when one word is.
func Chunks(text string, size int) []string {
	var out []string
	for len(text) > 0 {
		if len(text) <= size {
			out = append(out, text)
			break
		}
		cut := strings.LastIndexAny(text[:size], " \t\r\n") + 1
		if cut == 0 { // a word longer than size: cut after it
			if cut = strings.IndexAny(text[size:], " \t\r\n"); cut < 0 {
				cut = len(text)
			} else {
				cut += size + 1
			}
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	return out
}

// WordCount is one word and how often it occurs.
type WordCount struct {
	Word  string
	Count int
}

// Top returns the n most frequent words, most frequent first, ties in
// alphabetical order.
func Top(counts map[string]int, n int) []WordCount {
	all := make([]WordCount, 0, len(counts))
	for w, c := range counts {
		all = append(all, WordCount{w, c})
	}
	slices.SortFunc(all, func(a, b WordCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Word, b.Word)
	})
	return all[:min(n, len(all))]
}

// Handle is the worker's handler, the map step: a chunk of text in, its
// word counts (a JSON object) out.
func Handle(_ context.Context, t worker.Task) ([]byte, error) {
	if !utf8.Valid(t.Payload) {
		return nil, errors.New("wordcount: task payload is not UTF-8 text (not a wordcount task?)")
	}
	return json.Marshal(CountWords(string(t.Payload)))
}

// MaxChunk keeps map tasks well below the server's payload limit.
const MaxChunk = 1 << 20

// Count runs the map tasks, one per chunk, and reduces their counts in
// the client: the reduce is a sum per word, cheap next to reading the
// results.
func Count(ctx context.Context, c *client.Client, text string, chunkSize int, progress func(done, total int)) (map[string]int, int, error) {
	if chunkSize < 1 || chunkSize > MaxChunk {
		return nil, 0, fmt.Errorf("wordcount: chunk size %d out of range 1..%d", chunkSize, MaxChunk)
	}
	chunks := Chunks(text, chunkSize)
	if len(chunks) == 0 {
		return map[string]int{}, 0, nil
	}
	s, err := c.CreateSession(ctx, nil, client.WithApp("wordcount"))
	if err != nil {
		return nil, 0, fmt.Errorf("create session: %w", err)
	}
	defer func() { _ = s.Detach() }()
	tasks := make([]client.Task, len(chunks))
	pending := make(map[string]bool, len(chunks))
	for i, ch := range chunks {
		tasks[i] = client.Task{ID: fmt.Sprintf("chunk-%06d", i), Payload: []byte(ch)}
		pending[tasks[i].ID] = true
	}
	// Submit beside the collection, so results are read while later
	// batches are still being sent.
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	submitErr := make(chan error, 1)
	go func() {
		_, err := s.Submit(subCtx, tasks)
		submitErr <- err
	}()
	total := make(map[string]int)
	results, dead := s.Results(), s.DeadLetters()
	for len(pending) > 0 {
		select {
		case r, ok := <-results:
			if !ok {
				return nil, 0, errors.New("the session's results ended early")
			}
			if !pending[r.TaskID] {
				return nil, 0, fmt.Errorf("unexpected or repeated result for task %q", r.TaskID)
			}
			var counts map[string]int
			if err := json.Unmarshal(r.Payload, &counts); err != nil {
				return nil, 0, fmt.Errorf("result of task %s: %w", r.TaskID, err)
			}
			for w, n := range counts {
				total[w] += n
			}
			delete(pending, r.TaskID)
			if progress != nil {
				progress(len(chunks)-len(pending), len(chunks))
			}
		case err := <-submitErr:
			if err != nil {
				return nil, 0, fmt.Errorf("submit: %w", err)
			}
			submitErr = nil
		case d, ok := <-dead:
			if !ok {
				dead = nil
				continue
			}
			return nil, 0, fmt.Errorf("task %s dead-lettered after %d attempts: %v", d.TaskID, d.Attempts, d.Errors)
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("waiting for results (%d/%d in): %w", len(chunks)-len(pending), len(chunks), ctx.Err())
		}
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if err := s.Close(cctx); err != nil {
		return total, len(chunks), fmt.Errorf("close session: %w", err)
	}
	return total, len(chunks), nil
}
