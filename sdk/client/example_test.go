package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"

	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
)

// Submit tasks with Add, wait for them to be durable with Flush, and read
// each result once with All. The worker runs in the same process here; it
// is usually a separate program (sdk/worker) on other machines.
func Example() {
	addrs, stop := exampleCluster() // one gridd node on loopback
	defer stop()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- worker.Run(wctx, worker.Options{Addrs: addrs, WorkerID: "example", Logger: quiet},
			func(_ context.Context, t worker.Task) ([]byte, error) { return bytes.ToUpper(t.Payload), nil })
	}()
	defer func() {
		stopWorker()
		<-workerDone
	}()

	cl, err := client.Dial(ctx, addrs, client.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	words := []string{"alpha", "beta", "gamma"}
	for _, w := range words {
		if err := s.Add(ctx, client.Task{ID: w, Payload: []byte(w)}); err != nil {
			log.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	got := make(map[string]string)
	for r, err := range s.All(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		got[r.TaskID] = string(r.Payload)
		if len(got) == len(words) {
			break
		}
	}
	for _, w := range words { // results arrive in any order
		fmt.Println(w, got[w])
	}
	if err := s.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// alpha ALPHA
	// beta BETA
	// gamma GAMMA
}

// exampleCluster starts a one-node cluster in a temporary directory, for
// the examples; tests use internal/testcluster instead.
func exampleCluster() (addrs []string, stop func()) {
	dir, err := os.MkdirTemp("", "gridd-example-")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.Start(context.Background(), server.Config{
		ID:       "n1",
		DataDir:  dir,
		GRPCAddr: "127.0.0.1:0",
		RaftAddr: freePort(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	return []string{srv.GRPCAddr()}, func() {
		_ = srv.Close()
		_ = os.RemoveAll(dir)
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
