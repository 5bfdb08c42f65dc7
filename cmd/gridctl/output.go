package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// emit writes m as one protojson document, or as text through table.
// Unpopulated fields are printed too: a script reading "pending": 0 should
// not have to know that proto3 leaves zeros out.
func emit(w io.Writer, g *globals, m proto.Message, table func(w io.Writer) error) error {
	if g.output == "json" {
		b, err := jsonOpts.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode %T as JSON: %w", m, err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return table(w)
}

var jsonOpts = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}

// emitMembers writes {"members": [...]}, each member in protojson: the
// shape of ClusterStatus's members field, without the status fields that
// would read as empty values.
func emitMembers(w io.Writer, g *globals, members []*griddpb.Member) error {
	if g.output != "json" {
		return membersTable(w, members)
	}
	var b strings.Builder
	b.WriteString("{\n  \"members\": [")
	for i, m := range members {
		j, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode member %s as JSON: %w", m.GetId(), err)
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    ")
		b.Write(j)
	}
	b.WriteString("\n  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// tabular writes aligned columns; rows[0] is the header.
func tabular(w io.Writer, rows [][]string) error {
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = strings.Join(r, "\t")
	}
	return aligned(w, lines)
}

// keyValues writes "key  value" lines, aligned; an empty pair is a blank
// line between groups.
func keyValues(w io.Writer, kv [][2]string) error {
	lines := make([]string, len(kv))
	for i, p := range kv {
		lines[i] = p[0] + "\t" + p[1]
	}
	return aligned(w, lines)
}

// aligned lines up tab-separated cells and trims the padding tabwriter
// leaves after the last cell, so that no line ends in spaces.
func aligned(w io.Writer, lines []string) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func membersTable(w io.Writer, members []*griddpb.Member) error {
	rows := [][]string{{"ID", "RAFT ADDRESS", "GRPC ADDRESS", "SUFFRAGE", "LEADER"}}
	for _, m := range members {
		leader := ""
		if m.GetLeader() {
			leader = "yes"
		}
		rows = append(rows, []string{m.GetId(), m.GetRaftAddr(), orNone(m.GetGrpcAddr()), m.GetSuffrage(), leader})
	}
	return tabular(w, rows)
}

func statusTable(w io.Writer, st *griddpb.ClusterStatus) error {
	leader := "none: no leader is known (an election may be in progress)"
	if st.GetLeaderId() != "" {
		leader = st.GetLeaderId() + " at " + orNone(st.GetLeaderGrpcAddr())
	}
	err := keyValues(w, [][2]string{
		{"node", fmt.Sprintf("%s (%s)", st.GetNodeId(), st.GetState())},
		{"addresses", fmt.Sprintf("gRPC %s, Raft %s", orNone(st.GetGrpcAddr()), orNone(st.GetRaftAddr()))},
		{"leader", leader},
		{"term", u64(st.GetTerm())},
		{"log index", fmt.Sprintf("last %d, commit %d, applied %d, snapshot %d",
			st.GetLastLogIndex(), st.GetCommitIndex(), st.GetAppliedIndex(), st.GetLastSnapshotIndex())},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	return membersTable(w, st.GetMembers())
}

func sessionsTable(w io.Writer, sessions []*griddpb.Session) error {
	rows := [][]string{{"ID", "APP", "STATE", "PRIORITY", "WORKERS", "SUBMITTED", "PENDING", "COMPLETED", "DEAD", "CREATED"}}
	for _, s := range sessions {
		a, c := s.GetAttributes(), s.GetCounts()
		rows = append(rows, []string{
			s.GetId(), orNone(s.GetApp()), stateWords(s.GetState()), i32(a.GetPriority()),
			workerRange(a), u64(c.GetSubmitted()), u64(c.GetPending()), u64(c.GetCompleted()),
			u64(c.GetDeadLettered()), unixMs(s.GetCreatedUnixMs()),
		})
	}
	return tabular(w, rows)
}

func sessionDetail(w io.Writer, s *griddpb.Session) error {
	a, c := s.GetAttributes(), s.GetCounts()
	tags := strings.Join(a.GetTags(), ", ")
	return keyValues(w, [][2]string{
		{"id", s.GetId()},
		{"app", orNone(s.GetApp())},
		{"state", stateWords(s.GetState())},
		{"created", unixMs(s.GetCreatedUnixMs())},
		{"updated", unixMs(s.GetUpdatedUnixMs())},
		{"", ""},
		{"priority", i32(a.GetPriority())},
		{"client id", orNone(a.GetClientId())},
		{"workers", workerRange(a)},
		{"idle timeout", millis(a.GetIdleTimeoutMs(), "none")},
		{"task timeout", millis(a.GetTaskTimeoutMs(), "none")},
		{"max attempts", i32(a.GetMaxAttempts())},
		{"retry backoff", retryBackoff(a)},
		{"max in-flight batches per worker", i32(a.GetMaxInflightBatchesPerWorker())},
		{"preemptible", strconv.FormatBool(a.GetPreemptible())},
		{"cleanup on client exit", strconv.FormatBool(a.GetCleanupOnClientExit())},
		{"tags", orNone(tags)},
		{"", ""},
		{"tasks submitted", u64(c.GetSubmitted())},
		{"tasks pending", u64(c.GetPending()) + " (no outcome yet: waiting, running or retrying)"},
		{"tasks running", u64(c.GetRunning()) + " (as seen by the leader)"},
		{"tasks retrying", u64(c.GetRetrying()) + " (failed, waiting for another attempt)"},
		{"tasks completed", u64(c.GetCompleted())},
		{"tasks dead-lettered", u64(c.GetDeadLettered())},
		{"tasks cancelled", u64(c.GetCancelled())},
		{"attempts retried", u64(c.GetRetried())},
		{"attempts timed out", u64(c.GetTimedOut())},
		{"results not yet acknowledged", u64(c.GetResultsUnacked())},
		{"dead letters not yet acknowledged", u64(c.GetDeadLettersUnacked())},
	})
}

// retryBackoff reads "100ms doubling up to 10s"; zeros are the server's
// defaults, which a session created before backoff existed reads as.
func retryBackoff(a *griddpb.SessionAttributes) string {
	return millis(a.GetRetryBackoffMs(), "default") + " doubling up to " + millis(a.GetRetryBackoffMaxMs(), "default")
}

func workerRange(a *griddpb.SessionAttributes) string {
	max := "unlimited"
	if a.GetMaxWorkers() > 0 {
		max = i32(a.GetMaxWorkers())
	}
	return i32(a.GetMinWorkers()) + ".." + max
}

func stateWords(s griddpb.SessionState) string {
	switch s {
	case griddpb.SessionState_SESSION_STATE_OPEN:
		return "open"
	case griddpb.SessionState_SESSION_STATE_CLOSED:
		return "closed"
	}
	return "unknown"
}

// unixMs prints a time in UTC, so that output does not depend on where
// gridctl runs.
func unixMs(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func millis(ms int64, zero string) string {
	if ms == 0 {
		return zero
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }
func i32(n int32) string  { return strconv.FormatInt(int64(n), 10) }
