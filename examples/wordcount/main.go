// Command wordcount is a map/reduce word count on a gridd cluster: the
// client cuts a text into chunks, workers count the words of each chunk
// (one map task per chunk), and the client adds the counts up and prints
// the ten most frequent words. The text is the story shipped in this
// folder (text.txt, built into the binary) or the file given with --file.
//
//	wordcount worker [flags]   count words of chunks until interrupted
//	wordcount client [flags]   submit the chunks, reduce the counts, print the top words
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// defaultAddrs are the nodes `make run` starts.
const defaultAddrs = "127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339"

//go:embed text.txt
var story string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: wordcount worker [flags]   count words for gridd until interrupted
       wordcount client [flags]   submit a text in chunks, print its most frequent words
Run "wordcount <command> -h" for the flags.`)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "worker":
		return runWorker(ctx, args[1:], stderr)
	case "client":
		return runClient(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "wordcount: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func runWorker(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("wordcount worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", envOr("GRIDD_ADDR", defaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	id := fs.String("id", "", "worker id (default hostname-pid-random)")
	conc := fs.Int("concurrency", 0, "tasks run at once (default GOMAXPROCS)")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "wordcount:", err)
		return 2
	}
	err = worker.Run(ctx, worker.Options{
		Addrs: splitAddrs(*addrs), WorkerID: *id, Concurrency: *conc, APIKey: *apiKey, Logger: log,
	}, Handle)
	if err != nil {
		fmt.Fprintln(stderr, "wordcount worker:", err)
		return 1
	}
	return 0
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wordcount client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", envOr("GRIDD_ADDR", defaultAddrs), "gRPC addresses of gridd nodes, comma-separated (env GRIDD_ADDR)")
	file := fs.String("file", "", "text file to count (default: the story shipped with the example)")
	chunk := fs.Int("chunk", 512, "bytes of text per map task (cut at a space or line break)")
	top := fs.Int("top", 10, "words to print")
	apiKey := fs.String("api-key", os.Getenv("GRIDD_API_KEY"), "API key (env GRIDD_API_KEY)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	quiet := fs.Bool("quiet", false, "no progress lines")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err == nil && (*chunk < 1 || *chunk > MaxChunk) {
		err = fmt.Errorf("--chunk %d out of range 1..%d", *chunk, MaxChunk)
	}
	if err != nil {
		fmt.Fprintln(stderr, "wordcount:", err)
		return 2
	}
	text, name := story, "text.txt (shipped with the example)"
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintln(stderr, "wordcount:", err)
			return 1
		}
		if !utf8.Valid(b) {
			fmt.Fprintf(stderr, "wordcount: %s is not UTF-8 text\n", *file)
			return 1
		}
		text, name = string(b), *file
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, splitAddrs(*addrs), client.WithAPIKey(*apiKey), client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, "wordcount client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	var progress func(done, total int)
	if !*quiet {
		progress = progressLines(stderr)
	}
	start := time.Now()
	counts, tasks, err := Count(ctx, c, text, *chunk, progress)
	if err != nil {
		fmt.Fprintln(stderr, "wordcount client:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	words := 0
	for _, n := range counts {
		words += n
	}
	fmt.Fprintf(stdout, "%s: %d bytes, %d map tasks, %d words, %d distinct, in %s\n\n",
		name, len(text), tasks, words, len(counts), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "%4s  %-20s  %6s\n", "rank", "word", "count")
	for k, wc := range Top(counts, *top) {
		fmt.Fprintf(stdout, "%4d  %-20s  %6d\n", k+1, wc.Word, wc.Count)
	}
	return 0
}

// progressLines prints one line per 10% of the map results.
func progressLines(w io.Writer) func(done, total int) {
	next := 1
	return func(done, total int) {
		for next <= 10 && done*10 >= next*total {
			fmt.Fprintf(w, "%3d%%  %d/%d chunks\n", next*10, done, total)
			next++
		}
	}
}
