package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// ErrCorruptEntry is wrapped by DecodeCommand's errors.
var ErrCorruptEntry = errors.New("corrupt or unknown log entry")

// EncodeCommand marshals a command for the Raft log.
func EncodeCommand(c *fsmpb.Command) ([]byte, error) {
	if c == nil || c.GetCmd() == nil {
		return nil, errors.New("encode command: no command body set")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return b, nil
}

// DecodeCommand unmarshals and checks a Raft log entry. A corrupt entry is an
// error here; the cluster adapter turns it into a panic, because a node must
// never silently diverge from its peers.
//
// Unknown fields anywhere in the entry are an error too: they come from a
// newer gridd, and applying the entry without them could make this node
// diverge from one that understands them.
func DecodeCommand(b []byte) (*fsmpb.Command, error) {
	c := &fsmpb.Command{}
	if err := proto.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%w: %d bytes do not parse as a command: %w", ErrCorruptEntry, len(b), err)
	}
	if c.GetCmd() == nil {
		if len(c.ProtoReflect().GetUnknown()) > 0 {
			return nil, fmt.Errorf("%w: %d bytes hold no command this version knows (written by a newer gridd?)",
				ErrCorruptEntry, len(b))
		}
		return nil, fmt.Errorf("%w: %d bytes hold no command body", ErrCorruptEntry, len(b))
	}
	if path := unknownFieldPath(c.ProtoReflect()); path != "" {
		return nil, fmt.Errorf("%w: unknown fields in %s (written by a newer gridd?)", ErrCorruptEntry, path)
	}
	return c, nil
}

// unknownFieldPath returns where in m the first unknown field is, as a
// path from m's type such as "Command.enqueue.tasks[3]", or "".
func unknownFieldPath(m protoreflect.Message) string {
	if sub, ok := unknownAt(m); ok {
		return string(m.Descriptor().Name()) + sub
	}
	return ""
}

func unknownAt(m protoreflect.Message) (string, bool) {
	if len(m.GetUnknown()) > 0 {
		return "", true
	}
	var (
		path  string
		found bool
	)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if !fd.IsList() {
			if sub, ok := unknownAt(v.Message()); ok {
				path, found = "."+string(fd.Name())+sub, true
			}
			return !found
		}
		l := v.List()
		for i := range l.Len() {
			if sub, ok := unknownAt(l.Get(i).Message()); ok {
				path, found = fmt.Sprintf(".%s[%d]%s", fd.Name(), i, sub), true
				return false
			}
		}
		return true
	})
	return path, found
}
