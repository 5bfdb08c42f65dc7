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
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/gridd/gridd/examples/internal/cli"
)

//go:embed text.txt
var story string

func main() { cli.Main(run) }

var program = cli.Program{
	Name: "wordcount",
	Usage: `usage: wordcount worker [flags]   count words for gridd until interrupted
       wordcount client [flags]   submit a text in chunks, print its most frequent words
Run "wordcount <command> -h" for the flags.`,
	Worker: cli.Worker{Name: "wordcount", Handler: Handle}.Run,
	Client: runClient,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program.Run(ctx, args, stdout, stderr)
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("wordcount client", stderr)
	common := cli.CommonFlags(fs, "warn")
	file := fs.String("file", "", "text file to count (default: the story shipped with the example)")
	chunk := fs.Int("chunk", 512, "bytes of text per map task (cut at a space or line break)")
	top := fs.Int("top", 10, "words to print")
	timeout := cli.TimeoutFlag(fs)
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := common.Logger(stderr)
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
	c, err := common.Dial(ctx, log)
	if err != nil {
		fmt.Fprintln(stderr, "wordcount client:", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	var progress func(done, total int)
	if !*quiet {
		progress = cli.ProgressLines(stderr, "chunks")
	}
	start := time.Now()
	counts, tasks, err := Count(ctx, c, text, *chunk, progress)
	if err != nil {
		return cli.Exit(stderr, "wordcount client:", err)
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
