package rpc

import (
	"errors"
	"testing"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/protobuf/proto"
)

// FuzzRequestValidators feeds arbitrary bytes, decoded as each request the
// validators guard, to them: none may panic, every refusal must be an
// invalid-argument error, and what they accept must keep their rules.
// Run with: go test -run '^$' -fuzz FuzzRequestValidators ./rpc/
func FuzzRequestValidators(f *testing.F) {
	for _, m := range []proto.Message{
		&griddpb.CreateSessionRequest{RequestId: "r", SessionId: "s", Attributes: &griddpb.SessionAttributes{Priority: 3}},
		&griddpb.CancelTasksRequest{SessionId: "s", Ids: []string{"a"}},
		&griddpb.GetTasksRequest{SessionId: "s", Ids: []string{"a", "b"}},
		&griddpb.Ack{Ids: []string{"a"}},
		&griddpb.Batch{Messages: []*griddpb.Message{{Id: "a", Error: "boom"}}},
		&griddpb.WorkerStreamMessage{ExtendLease: []string{"a"}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{})
	l := Limits{MaxPayloadBytes: 64, MaxBatchTasks: 16}
	invalid := func(t *testing.T, what string, err error) {
		t.Helper()
		if err != nil && !errors.Is(err, errInvalid) && !errors.Is(err, fsm.ErrInvalid) {
			t.Fatalf("%s: refusal is not an invalid-argument error: %v", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var create griddpb.CreateSessionRequest
		if proto.Unmarshal(data, &create) == nil {
			err := ValidateCreate(&create)
			invalid(t, "create", err)
			if err == nil && fsm.ValidateAttrs(fsm.DefaultAttrs(attrsToFSM(create.Attributes))) != nil {
				t.Fatalf("create accepted attributes the state machine refuses: %v", create.Attributes)
			}
		}
		var cancel griddpb.CancelTasksRequest
		if proto.Unmarshal(data, &cancel) == nil {
			err := validateCancel(&cancel)
			invalid(t, "cancel", err)
			if err == nil && (cancel.All == (len(cancel.Ids) > 0) || len(cancel.Ids) > MaxCancelIDs) {
				t.Fatalf("cancel accepted all=%v with %d ids", cancel.All, len(cancel.Ids))
			}
		}
		var get griddpb.GetTasksRequest
		if proto.Unmarshal(data, &get) == nil {
			err := validateGet(&get)
			invalid(t, "get tasks", err)
			if err == nil && (len(get.Ids) == 0 || len(get.Ids) > MaxGetIDs) {
				t.Fatalf("get tasks accepted %d ids", len(get.Ids))
			}
		}
		var ack griddpb.Ack
		if proto.Unmarshal(data, &ack) == nil {
			invalid(t, "acks", ValidateAcks(l, &ack))
		}
		var res griddpb.Batch
		if proto.Unmarshal(data, &res) == nil {
			err := ValidateResults(l, "s", &res)
			invalid(t, "results", err)
			if err == nil {
				for _, m := range res.Messages {
					if m.Id == "" || len(m.Id) > fsm.MaxTaskIDLen {
						t.Fatalf("results accepted task id %q", m.Id)
					}
				}
			}
		}
		var wsm griddpb.WorkerStreamMessage
		if proto.Unmarshal(data, &wsm) == nil {
			invalid(t, "extend lease", ValidateExtendLease(l, wsm.ExtendLease))
		}
	})
}
