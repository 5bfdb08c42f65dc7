package fsm

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// sampleCommands holds one command of every kind, with every field used.
func sampleCommands() []*fsmpb.Command {
	enq := cmdEnqueue("s1", "a", "b")
	enq.GetEnqueue().UseSharedData = true
	enq.GetEnqueue().RequiredSharedDataUpdateLevel = 3
	cmds := []*fsmpb.Command{
		withKey("k1", cmdCreate("s1", &fsmpb.SessionAttrs{
			Priority: 7, ClientId: "c", MinWorkers: 1, MaxWorkers: 2, IdleTimeoutMs: 3, Preemptible: true,
			CleanupOnClientExit: true, MaxInflightBatchesPerWorker: 4, Tags: []string{"x"}, TaskTimeoutMs: 5, MaxAttempts: 6,
		})),
		withKey("k2", cmdUpdate(&fsmpb.UpdateSession{
			SessionId: "s1", Priority: ptr[int32](0), MaxWorkers: ptr[int32](9), ReplaceTags: true, Tags: []string{"y"},
		})),
		withKey("k3", cmdClose("s1")),
		enq,
		cmdOutcomes("s1", okOutcome("a"), failOutcome("b", "boom")),
		cmdAckResults("s1", "a"),
		cmdAckDead("s1", "b"),
		withKey("k4", cmdSetMember("n1", "127.0.0.1:7337", "127.0.0.1:1337")),
		withKey("k5", cmdRemoveMember("n1")),
	}
	for i, c := range cmds {
		c.NowUnixMs = 1_700_000_000_000 + int64(i)
	}
	return cmds
}

func TestCodecRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %v: %v", c, err)
		}
		if !proto.Equal(got, c) {
			t.Fatalf("round trip changed %v into %v", c, got)
		}
	}
}

func TestEncodeRejectsEmpty(t *testing.T) {
	for _, c := range []*fsmpb.Command{nil, {}, {NowUnixMs: 5, RequestId: "k"}} {
		if _, err := EncodeCommand(c); err == nil {
			t.Errorf("EncodeCommand(%v) succeeded", c)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := EncodeCommand(cmdEnqueue("s1", "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	// A field number no version uses, at the top and inside a task.
	unknownTop := protowire.AppendTag(nil, 99, protowire.VarintType)
	unknownTop = protowire.AppendVarint(unknownTop, 1)
	newCommand := protowire.AppendTag(nil, 40, protowire.BytesType)
	newCommand = protowire.AppendBytes(newCommand, nil)
	taskWithExtra := &fsmpb.Task{Id: "a"}
	taskBytes, _ := proto.Marshal(taskWithExtra)
	taskBytes = append(taskBytes, unknownTop...)
	enqBytes := protowire.AppendTag(nil, 1, protowire.BytesType)
	enqBytes = protowire.AppendString(enqBytes, "s1")
	enqBytes = protowire.AppendTag(enqBytes, 2, protowire.BytesType)
	enqBytes = protowire.AppendBytes(enqBytes, taskBytes)
	nested := protowire.AppendTag(nil, 13, protowire.BytesType)
	nested = protowire.AppendBytes(nested, enqBytes)

	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "no command body"},
		{"only a clock", protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5), "no command body"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "do not parse"},
		{"truncated", valid[:len(valid)-1], "do not parse"},
		{"unknown command", newCommand, "no command this version knows"},
		{"unknown top field", append(append([]byte(nil), valid...), unknownTop...), "unknown fields in Command"},
		{"unknown nested field", nested, "unknown fields in Command.enqueue.tasks[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeCommand(tc.b)
			if c != nil || !errors.Is(err, ErrCorruptEntry) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeCommand = %v, %v; want ErrCorruptEntry containing %q", c, err, tc.want)
			}
		})
	}
}

// FuzzDecodeCommand checks that no entry makes DecodeCommand panic, and that
// whatever it accepts encodes and decodes back to the same command.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("accepted %x but cannot encode it: %v", b, err)
		}
		again, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !proto.Equal(c, again) {
			t.Fatalf("round trip changed %v into %v", c, again)
		}
		enc2, err := EncodeCommand(again)
		if err != nil || string(enc2) != string(enc) {
			t.Fatalf("encoding is not stable: %x vs %x (%v)", enc, enc2, err)
		}
		// Applying a decoded entry never panics either.
		New(Options{}).Apply(1, c)
	})
}
