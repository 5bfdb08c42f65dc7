package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
)

const sharedLong = `Store, read and delete a session's shared data: one payload (up to the
server's --max-shared-data-bytes, 256 MiB by default) that every task of the
session can read, kept in the central cache of the gridd nodes and
replicated through Raft.

Shared data has update levels. "set" stores the first one (level 1 unless
--level says otherwise) and fails if the session has shared data already;
"update" stores a higher one (by default the current level + 1). Workers
running tasks that require level L read exactly L, so a client can update
the data between iterations while older tasks finish. The last few levels
are kept; older ones are dropped.

Each level expires after its TTL (--ttl, or the server's default; the server
caps it); an update renews it, a read does not. Closing the session deletes
its shared data.

Payloads move in 1 MiB chunks with their SHA-256, and an upload is retried
across leader changes without being stored twice. A progress bar is drawn on
standard error for payloads over 4 MiB when it is a terminal, unless --quiet.
With --output json, set, update and get print the stored level as one
protojson SharedDataInfo document (sha256 in base64, as protojson writes
bytes).`

const sharedExample = `  gridctl shared set 01J9ZQ3V6X6M6P3N4V6ZB0D2QK market.bin --ttl 2h
  produce-params | gridctl shared update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK -
  gridctl shared get 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --level 3 --file params-3.bin
  gridctl shared get 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --info
  gridctl shared delete 01J9ZQ3V6X6M6P3N4V6ZB0D2QK`

func newSharedCmd(g *globals) *cobra.Command {
	c := group("shared", "Set, update, get and delete a session's shared data",
		sharedUploadCmd(g, false), sharedUploadCmd(g, true), sharedGetCmd(g), sharedDeleteCmd(g))
	c.Long, c.Example = sharedLong, sharedExample
	return c
}

// barFrom is the payload size above which a transfer draws a progress bar:
// smaller ones end before a bar would tell anything.
const barFrom = 4 << 20

type uploadFlags struct {
	level int64
	ttl   time.Duration
	quiet bool
}

func sharedUploadCmd(g *globals, update bool) *cobra.Command {
	var f uploadFlags
	cmd := &cobra.Command{
		Use:   "set SESSION [FILE|-]",
		Short: "Store the first level of a session's shared data from a file or standard input",
		Long: `Store the first level of SESSION's shared data, read from FILE (standard
input when FILE is - or absent). It fails with "already exists" when the
session has shared data: use gridctl shared update. Prints the level stored,
its size, SHA-256 and expiry.`,
		Example: `  gridctl shared set 01J9ZQ3V6X6M6P3N4V6ZB0D2QK market.bin
  gridctl shared set 01J9ZQ3V6X6M6P3N4V6ZB0D2QK - --ttl 30m < market.bin`,
		Args: cobra.RangeArgs(1, 2),
	}
	levelHelp := "the level to store; 0 means 1"
	if update {
		cmd.Use = "update SESSION [FILE|-]"
		cmd.Short = "Store a new, higher level of a session's shared data"
		cmd.Long = `Store a new level of SESSION's shared data, read from FILE (standard input
when FILE is - or absent). The level must be above the current one (by
default it is the current + 1); the update renews the TTL. Tasks already
submitted keep reading the level they require, while it is kept. Prints
the level stored, its size, SHA-256 and expiry.`
		cmd.Example = `  gridctl shared update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK params.bin
  gridctl shared update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK params.bin --level 7 --ttl 1h`
		levelHelp = "the level to store, above the current one; 0 means the current + 1"
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runUpload(cmd, g, &f, update, args)
	}
	fs := cmd.Flags()
	fs.Int64Var(&f.level, "level", 0, levelHelp)
	fs.DurationVar(&f.ttl, "ttl", 0, "how long the level is kept, such as 10m; 0 means the server's default (the server caps it)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar on standard error")
	return cmd
}

// checkSession refuses an empty id before anything is read or sent.
func checkSession(id string) error {
	if id == "" {
		return errors.New("no session id: give the session's id, as gridctl session list shows it")
	}
	return nil
}

func runUpload(cmd *cobra.Command, g *globals, f *uploadFlags, update bool, args []string) error {
	session := args[0]
	if err := checkSession(session); err != nil {
		return err
	}
	if f.level < 0 {
		return fmt.Errorf("--level %d: want 0 (the next level) or more", f.level)
	}
	if f.ttl < 0 || (f.ttl > 0 && f.ttl < time.Millisecond) {
		return fmt.Errorf("--ttl %s: want 0 (the server's default) or a duration of at least 1ms, such as 10m", f.ttl)
	}
	data, err := readPayload(cmd, args[1:])
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	tr := newTransfer(stderr, !f.quiet && isTerminal(stderr))
	c, err := sdkClient(ctx, g, stderr, tr.dialOption())
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	what, upload := "set", c.SetSharedData
	if update {
		what, upload = "update", c.UpdateSharedData
	}
	info, err := upload(ctx, session, f.level, data, f.ttl)
	tr.finish()
	if err != nil {
		return sdkError(fmt.Sprintf("%s shared data of session %s", what, session), err, g)
	}
	return emitShared(cmd.OutOrStdout(), g, info)
}

// readPayload reads the whole payload first: the SDK sends its size and
// SHA-256 ahead of the data, and a retry after a failover resends it.
func readPayload(cmd *cobra.Command, args []string) ([]byte, error) {
	if len(args) == 0 || args[0] == "-" {
		data, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("read the payload from standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return nil, fmt.Errorf("read the payload: %w", err)
	}
	return data, nil
}

type getFlags struct {
	level int64
	file  string
	info  bool
	quiet bool
}

func sharedGetCmd(g *globals) *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get SESSION",
		Short: "Write a level of a session's shared data to standard output or a file",
		Long: `Write a level of SESSION's shared data (--level, the latest by default) to
standard output, or to --file, and describe it (level, size, SHA-256, expiry)
on standard error. The bytes are checked against their SHA-256.

--info prints the description on standard output instead of the payload,
without downloading it. With --output json the description is printed as one
protojson document and the payload is written only with --file.

A level above the latest is "failed precondition" (not written yet); a level
no longer kept, or a session without shared data, is "not found".`,
		Example: `  gridctl shared get 01J9ZQ3V6X6M6P3N4V6ZB0D2QK > latest.bin
  gridctl shared get 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --level 3 --file params-3.bin
  gridctl shared get 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --info -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(cmd, g, &f, args[0])
		},
	}
	fs := cmd.Flags()
	fs.Int64Var(&f.level, "level", 0, "the level to read; 0 means the latest")
	// Not -o: that is --output, which every command shares.
	fs.StringVarP(&f.file, "file", "f", "", "write the payload to this file instead of standard output")
	fs.BoolVar(&f.info, "info", false, "print the level's description only, not its payload")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar and no description on standard error")
	return cmd
}

func runGet(cmd *cobra.Command, g *globals, f *getFlags, session string) error {
	if err := checkSession(session); err != nil {
		return err
	}
	if f.level < 0 {
		return fmt.Errorf("--level %d: want 0 (the latest) or more", f.level)
	}
	if f.info && f.file != "" {
		return errors.New("--info prints no payload: give --info or --file, not both")
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if f.info || (g.output == "json" && f.file == "") {
		info, err := sharedHeader(cmd.Context(), g, session, f.level)
		if err != nil {
			return err
		}
		return emitShared(stdout, g, info)
	}
	ctx := cmd.Context()
	tr := newTransfer(stderr, !f.quiet && isTerminal(stderr))
	c, err := sdkClient(ctx, g, stderr, tr.dialOption())
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	data, info, err := c.GetSharedData(ctx, session, f.level)
	tr.finish()
	if err != nil {
		return sdkError(fmt.Sprintf("get level %d of the shared data of session %s", f.level, session), err, g)
	}
	if f.file != "" {
		if err := os.WriteFile(f.file, data, 0o666); err != nil {
			return fmt.Errorf("write the payload: %w", err)
		}
	} else if _, err := stdout.Write(data); err != nil {
		return fmt.Errorf("write the payload: %w", err)
	}
	if g.output == "json" {
		return emitShared(stdout, g, info)
	}
	if !f.quiet {
		fmt.Fprintf(stderr, "gridctl: session %s level %d: %s, sha256 %s, expires %s\n", info.SessionID, info.Level,
			sizeWords(info.Size), hex.EncodeToString(info.SHA256), expiresWords(info.Expires))
	}
	return nil
}

// sharedHeader reads only the header of a level: the stream is cancelled
// once it arrived, so --info on a large payload does not download it.
func sharedHeader(ctx context.Context, g *globals, session string, level int64) (client.SharedDataInfo, error) {
	var h *griddpb.SharedDataHeader
	err := call(ctx, g, func(ctx context.Context, cc *grpc.ClientConn) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := griddpb.NewCacheClient(cc).GetSharedData(ctx,
			&griddpb.GetSharedDataRequest{SessionId: session, UpdateLevel: level})
		if err != nil {
			return err
		}
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if h = m.GetHeader(); h == nil {
			return errors.New("the node's shared data stream did not start with a header (is it a gridd node of the same version?)")
		}
		return nil
	})
	if err != nil {
		return client.SharedDataInfo{}, fmt.Errorf("get level %d of the shared data of session %s: %w", level, session, err)
	}
	info := client.SharedDataInfo{SessionID: h.GetSessionId(), Level: h.GetUpdateLevel(), Size: h.GetSize(),
		SHA256: h.GetSha256()}
	if ms := h.GetExpiresUnixMs(); ms > 0 {
		info.Expires = time.UnixMilli(ms)
	}
	return info, nil
}

func sharedDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete SESSION",
		Short: "Delete every level of a session's shared data",
		Long: `Delete every level of SESSION's shared data. Tasks that still require one
of its levels fail to read it. Deleting when there is none is not an error:
the output says so. Closing the session deletes its shared data too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			session := args[0]
			if err := checkSession(session); err != nil {
				return err
			}
			req := &griddpb.DeleteSharedDataRequest{RequestId: requestID(), SessionId: session}
			var resp *griddpb.DeleteSharedDataResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewCacheClient(cc).DeleteSharedData(ctx, req)
				return err
			})
			if err != nil {
				return fmt.Errorf("delete the shared data of session %s: %w", session, err)
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				if resp.GetDeleted() {
					_, err := fmt.Fprintf(w, "shared data of session %s deleted\n", session)
					return err
				}
				_, err := fmt.Fprintf(w, "session %s had no shared data\n", session)
				return err
			})
		},
	}
}

// sdkError puts the code of an SDK error into gridctl's words ("invalid
// argument: ...", with a hint) instead of gRPC's "rpc error: code = ...".
func sdkError(what string, err error, g *globals) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		return fmt.Errorf("%s: %w", what, &rpcError{st: st, hint: hintFor(st.Code(), g)})
	}
	return fmt.Errorf("%s: %w", what, err)
}

func emitShared(w io.Writer, g *globals, info client.SharedDataInfo) error {
	m := &griddpb.SharedDataInfo{SessionId: info.SessionID, UpdateLevel: info.Level, Size: info.Size,
		Sha256: info.SHA256}
	if !info.Expires.IsZero() {
		m.ExpiresUnixMs = info.Expires.UnixMilli()
	}
	return emit(w, g, m, func(w io.Writer) error {
		return keyValues(w, [][2]string{
			{"session", info.SessionID},
			{"level", fmt.Sprint(info.Level)},
			{"size", sizeWords(info.Size)},
			{"sha256", hex.EncodeToString(info.SHA256)},
			{"expires", expiresWords(info.Expires)},
		})
	})
}

// sizeWords is exact bytes, and MiB when that is easier to read.
func sizeWords(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}

func expiresWords(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// transfer feeds a progress bar with the shared-data bytes a gRPC stream
// sends or receives. It sits in a stream interceptor because the SDK moves
// the payload in one call; a retried attempt (a failover) starts the count
// again from its header.
type transfer struct {
	w       io.Writer
	enabled bool

	mu          sync.Mutex
	bar         *progressBar // made at the first header of a large payload
	done, total uint64
}

func newTransfer(w io.Writer, enabled bool) *transfer { return &transfer{w: w, enabled: enabled} }

func (t *transfer) dialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || !t.enabled {
			return cs, err
		}
		return &countedStream{ClientStream: cs, t: t}, nil
	})
}

func (t *transfer) count(m any) {
	c, ok := m.(*griddpb.SharedDataChunk)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := c.GetHeader(); h != nil {
		t.done, t.total = 0, uint64(max(h.GetSize(), 0))
		if t.bar == nil && t.total > barFrom {
			t.bar = newProgressBar(t.w, true)
			t.bar.line = bytesLine
		}
	}
	t.done += uint64(len(c.GetData()))
	t.bar.update(t.done, t.total, 0, t.done >= t.total)
}

// finish leaves the bar's last line on screen, if one was drawn.
func (t *transfer) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bar.finish()
}

type countedStream struct {
	grpc.ClientStream
	t *transfer
}

func (s *countedStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err == nil {
		s.t.count(m)
	}
	return err
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.t.count(m)
	}
	return err
}

// bytesLine is "[=====>    ]  12.0/256.0 MiB   4.7%  85.3 MiB/s  ETA 3s  elapsed 0.2s".
func bytesLine(done, total, _ uint64, rate float64, elapsed time.Duration) string {
	bar, frac, eta := barParts(done, total, rate)
	const mib = 1 << 20
	return fmt.Sprintf("[%s] %.1f/%.1f MiB %5.1f%%  %.1f MiB/s  ETA %s  elapsed %s",
		bar, float64(done)/mib, float64(total)/mib, frac*100, rate/mib, eta, roundDuration(elapsed))
}
