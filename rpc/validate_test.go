package rpc

import (
	"errors"
	"strings"
	"testing"

	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/protobuf/proto"
)

func TestValidateBatch(t *testing.T) {
	l := Limits{MaxPayloadBytes: 8, MaxBatchTasks: 3}
	m := func(id string, n int) *griddpb.Message { return &griddpb.Message{Id: id, Payload: make([]byte, n)} }
	tests := []struct {
		name    string
		batch   *griddpb.Batch
		wantErr string
	}{
		{"ok", &griddpb.Batch{Messages: []*griddpb.Message{m("a", 8), m("b", 0)}}, ""},
		{"ok with own session", &griddpb.Batch{SessionId: "s", Messages: []*griddpb.Message{m("a", 1)}}, ""},
		{"nil", nil, "empty submit"},
		{"no tasks", &griddpb.Batch{}, "has no tasks"},
		{"too many", &griddpb.Batch{Messages: []*griddpb.Message{m("a", 1), m("b", 1), m("c", 1), m("d", 1)}}, "limit is 3"},
		{"empty id", &griddpb.Batch{Messages: []*griddpb.Message{m("", 1)}}, "id is empty"},
		{"long id", &griddpb.Batch{Messages: []*griddpb.Message{m(strings.Repeat("x", 257), 1)}}, "limit is 256"},
		{"bad utf8", &griddpb.Batch{Messages: []*griddpb.Message{m("\xff", 1)}}, "UTF-8"},
		{"big payload", &griddpb.Batch{Messages: []*griddpb.Message{m("a", 9)}}, "payload is 9 bytes"},
		{"nil task", &griddpb.Batch{Messages: []*griddpb.Message{nil}}, "is empty"},
		{"other session", &griddpb.Batch{SessionId: "t", Messages: []*griddpb.Message{m("a", 1)}}, "belongs to session"},
		{"negative level", &griddpb.Batch{RequiredSharedDataUpdateLevel: -1, Messages: []*griddpb.Message{m("a", 1)}}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateBatch(l, "s", tt.batch)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errInvalid) {
				t.Fatalf("got %v, want an invalid-argument error containing %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzValidateBatch feeds arbitrary wire bytes through decoding and
// validation: no panic, and an accepted batch really is within the limits.
func FuzzValidateBatch(f *testing.F) {
	seed, _ := proto.Marshal(&griddpb.Batch{Seq: 1, Messages: []*griddpb.Message{{Id: "a", Payload: []byte("x")}}})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x1a, 0x00})
	l := Limits{MaxPayloadBytes: 64, MaxBatchTasks: 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b griddpb.Batch
		if proto.Unmarshal(data, &b) != nil {
			return
		}
		if err := ValidateBatch(l, "s", &b); err != nil {
			if !errors.Is(err, errInvalid) {
				t.Fatalf("error is not an invalid-argument error: %v", err)
			}
			return
		}
		if len(b.Messages) == 0 || len(b.Messages) > 16 {
			t.Fatalf("accepted a batch of %d tasks", len(b.Messages))
		}
		for _, m := range b.Messages {
			if m.Id == "" || len(m.Id) > 256 || len(m.Payload) > 64 {
				t.Fatalf("accepted task id %q payload %d", m.Id, len(m.Payload))
			}
		}
	})
}

func TestValidateExtendLease(t *testing.T) {
	l := Limits{MaxBatchTasks: 2}
	tests := []struct {
		name    string
		ids     []string
		wantErr string
	}{
		{"ok", []string{"a", "b"}, ""},
		{"too many", []string{"a", "b", "c"}, "limit is 2"},
		{"empty id", []string{"a", ""}, "extend_lease 1"},
		{"bad utf8", []string{"\xff"}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateExtendLease(l, tt.ids)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errInvalid) {
				t.Fatalf("got %v, want an invalid-argument error containing %q", err, tt.wantErr)
			}
		})
	}
}
