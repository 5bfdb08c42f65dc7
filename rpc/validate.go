package rpc

import (
	"unicode/utf8"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
)

// Limits bound what one request may carry.
type Limits struct {
	MaxPayloadBytes int // per task payload or result
	MaxBatchTasks   int // per batch
	// Limits (H13), checked on the leader before proposing; zero means
	// unlimited.
	MaxPendingPerSession int // tasks without an outcome, per session
	MaxSessionsPerApp    int // open sessions, per app
}

// Default limits.
const (
	DefaultMaxPayloadBytes = 4 << 20
	DefaultMaxBatchTasks   = 10_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxPayloadBytes <= 0 {
		l.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if l.MaxBatchTasks <= 0 {
		l.MaxBatchTasks = DefaultMaxBatchTasks
	}
	return l
}

func validateID(kind, id string) error {
	switch {
	case id == "":
		return invalidf("%s id is empty", kind)
	case len(id) > fsm.MaxTaskIDLen:
		return invalidf("%s id is %d bytes long; the limit is %d", kind, len(id), fsm.MaxTaskIDLen)
	case !utf8.ValidString(id):
		return invalidf("%s id is not valid UTF-8", kind)
	}
	return nil
}

// ValidateBatch checks a task batch submitted on the stream of sessionID
// before anything is proposed, so that bad input never reaches the log.
func ValidateBatch(l Limits, sessionID string, b *griddpb.Batch) error {
	l = l.withDefaults()
	if b == nil {
		return invalidf("empty submit message: it needs a batch")
	}
	if b.SessionId != "" && b.SessionId != sessionID {
		return invalidf("batch names session %q but the stream belongs to session %q", b.SessionId, sessionID)
	}
	if len(b.Messages) == 0 {
		return invalidf("batch %d has no tasks", b.Seq)
	}
	if len(b.Messages) > l.MaxBatchTasks {
		return invalidf("batch %d has %d tasks; the limit is %d: split it", b.Seq, len(b.Messages), l.MaxBatchTasks)
	}
	if b.RequiredSharedDataUpdateLevel < 0 {
		return invalidf("required_shared_data_update_level is negative (%d)", b.RequiredSharedDataUpdateLevel)
	}
	for i, m := range b.Messages {
		if m == nil {
			return invalidf("task %d of batch %d is empty", i, b.Seq)
		}
		if err := validateID("task", m.Id); err != nil {
			return invalidf("task %d of batch %d: %v", i, b.Seq, err)
		}
		if len(m.Payload) > l.MaxPayloadBytes {
			return invalidf("task %q: payload is %d bytes; the limit is %d", m.Id, len(m.Payload), l.MaxPayloadBytes)
		}
	}
	return nil
}

// ValidateResults checks a batch of results from a worker.
func ValidateResults(l Limits, sessionID string, b *griddpb.Batch) error {
	l = l.withDefaults()
	if b == nil || len(b.Messages) == 0 {
		return invalidf("results message has no results")
	}
	if b.SessionId != "" && b.SessionId != sessionID {
		return invalidf("results name session %q but the stream belongs to session %q", b.SessionId, sessionID)
	}
	if len(b.Messages) > l.MaxBatchTasks {
		return invalidf("results batch has %d results; the limit is %d", len(b.Messages), l.MaxBatchTasks)
	}
	for i, m := range b.Messages {
		if m == nil {
			return invalidf("result %d is empty", i)
		}
		if err := validateID("task", m.Id); err != nil {
			return invalidf("result %d: %v", i, err)
		}
		if len(m.Payload) > l.MaxPayloadBytes {
			return invalidf("result of task %q is %d bytes; the limit is %d", m.Id, len(m.Payload), l.MaxPayloadBytes)
		}
	}
	return nil
}

// ValidateExtendLease checks the task ids of a lease extension.
func ValidateExtendLease(l Limits, ids []string) error {
	l = l.withDefaults()
	if len(ids) > l.MaxBatchTasks {
		return invalidf("extend_lease lists %d tasks; the limit is %d", len(ids), l.MaxBatchTasks)
	}
	for i, id := range ids {
		if err := validateID("task", id); err != nil {
			return invalidf("extend_lease %d: %v", i, err)
		}
	}
	return nil
}

// ValidateAcks checks an acknowledgement.
func ValidateAcks(l Limits, a *griddpb.Ack) error {
	l = l.withDefaults()
	if a == nil || len(a.Ids) == 0 {
		return invalidf("ack has no ids")
	}
	if len(a.Ids) > l.MaxBatchTasks {
		return invalidf("ack has %d ids; the limit is %d", len(a.Ids), l.MaxBatchTasks)
	}
	for _, id := range a.Ids {
		if err := validateID("task", id); err != nil {
			return invalidf("ack: %v", err)
		}
	}
	return nil
}

func attrsToFSM(a *griddpb.SessionAttributes) *fsmpb.SessionAttrs {
	if a == nil {
		return &fsmpb.SessionAttrs{}
	}
	return &fsmpb.SessionAttrs{
		Priority:                    a.Priority,
		ClientId:                    a.ClientId,
		MinWorkers:                  a.MinWorkers,
		MaxWorkers:                  a.MaxWorkers,
		IdleTimeoutMs:               a.IdleTimeoutMs,
		Preemptible:                 a.Preemptible,
		CleanupOnClientExit:         a.CleanupOnClientExit,
		MaxInflightBatchesPerWorker: a.MaxInflightBatchesPerWorker,
		Tags:                        a.Tags,
		TaskTimeoutMs:               a.TaskTimeoutMs,
		MaxAttempts:                 a.MaxAttempts,
		RetryBackoffMs:              a.RetryBackoffMs,
		RetryBackoffMaxMs:           a.RetryBackoffMaxMs,
	}
}

// ValidateCreate checks a CreateSession request with the same rules the
// state machine applies, so bad attributes never reach the log.
func ValidateCreate(req *griddpb.CreateSessionRequest) error {
	if req.SessionId != "" {
		if err := validateID("session", req.SessionId); err != nil {
			return err
		}
	}
	if len(req.RequestId) > fsm.MaxTaskIDLen {
		return invalidf("request_id is %d bytes long; the limit is %d", len(req.RequestId), fsm.MaxTaskIDLen)
	}
	return fsm.ValidateAttrs(fsm.DefaultAttrs(attrsToFSM(req.Attributes)))
}

func updateToFSM(id string, u *griddpb.SessionUpdate) *fsmpb.UpdateSession {
	c := &fsmpb.UpdateSession{SessionId: id}
	if u == nil {
		return c
	}
	c.Priority = u.Priority
	c.MinWorkers = u.MinWorkers
	c.MaxWorkers = u.MaxWorkers
	c.IdleTimeoutMs = u.IdleTimeoutMs
	c.Preemptible = u.Preemptible
	c.CleanupOnClientExit = u.CleanupOnClientExit
	c.MaxInflightBatchesPerWorker = u.MaxInflightBatchesPerWorker
	c.TaskTimeoutMs = u.TaskTimeoutMs
	c.MaxAttempts = u.MaxAttempts
	c.RetryBackoffMs = u.RetryBackoffMs
	c.RetryBackoffMaxMs = u.RetryBackoffMaxMs
	c.ReplaceTags = u.ReplaceTags
	c.Tags = u.Tags
	return c
}
