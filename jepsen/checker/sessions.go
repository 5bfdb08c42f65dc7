package checker

import (
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/gridd/gridd/jepsen/history"
)

// sessionState is the register a session's metadata is modeled as: whether
// it exists, whether it is closed, and the one attribute the workload
// writes (its priority).
type sessionState struct {
	Exists, Closed bool
	Priority       int32
}

type sessionInput struct {
	F        string
	Priority int32
}

type sessionOutput struct {
	// Unknown: the outcome was never learned; any effect is allowed.
	Unknown bool
	// Code is "" for success, else the gRPC code name of a definite failure.
	Code     string
	State    string // get: "open" or "closed"
	Priority int32  // get and update: the priority the server returned
}

// Codes the server answers with for a definite business failure.
const (
	codeNotFound = "NotFound"
	codeExists   = "AlreadyExists"
	codeClosed   = "FailedPrecondition"
)

func stepSession(state, input, output interface{}) (bool, interface{}) {
	s := state.(sessionState)
	in := input.(sessionInput)
	out := output.(sessionOutput)
	// next is the state the operation leads to when it takes effect.
	next := s
	switch in.F {
	case history.Create:
		if !s.Exists {
			next = sessionState{Exists: true, Priority: in.Priority}
		}
	case history.Update:
		if s.Exists && !s.Closed {
			next.Priority = in.Priority
		}
	case history.Close:
		if s.Exists {
			next.Closed = true
		}
	}
	if out.Unknown {
		return true, next
	}
	switch in.F {
	case history.Create:
		switch out.Code {
		case "":
			return !s.Exists, next
		case codeExists:
			return s.Exists, s
		}
	case history.Update:
		switch out.Code {
		case "":
			return s.Exists && !s.Closed && out.Priority == in.Priority, next
		case codeNotFound:
			return !s.Exists, s
		case codeClosed:
			return s.Exists && s.Closed, s
		}
	case history.Close:
		switch out.Code {
		case "":
			return s.Exists, next
		case codeNotFound:
			return !s.Exists, s
		}
	case history.Get:
		switch out.Code {
		case "":
			want := history.StateOpen
			if s.Closed {
				want = history.StateClosed
			}
			return s.Exists && out.State == want && out.Priority == s.Priority, s
		case codeNotFound:
			return !s.Exists, s
		}
	}
	// Any other definite failure (InvalidArgument, say) changed nothing.
	return true, s
}

// SessionModel is the porcupine model of session metadata, partitioned per
// session id (each session is an independent register).
var SessionModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range h {
			k := op.Metadata.(string)
			if _, ok := by[k]; !ok {
				order = append(order, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() interface{} { return sessionState{} },
	Step: stepSession,
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(sessionInput), output.(sessionOutput)
		arg := ""
		if in.F == history.Create || in.F == history.Update {
			arg = fmt.Sprint(in.Priority)
		}
		switch {
		case out.Unknown:
			return fmt.Sprintf("%s(%s) -> ?", in.F, arg)
		case out.Code != "":
			return fmt.Sprintf("%s(%s) -> %s", in.F, arg, out.Code)
		case in.F == history.Get:
			return fmt.Sprintf("get() -> %s p=%d", out.State, out.Priority)
		default:
			return fmt.Sprintf("%s(%s) -> ok", in.F, arg)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(sessionState)
		switch {
		case !s.Exists:
			return "absent"
		case s.Closed:
			return fmt.Sprintf("closed p=%d", s.Priority)
		default:
			return fmt.Sprintf("open p=%d", s.Priority)
		}
	},
	DescribeOperationMetadata: func(info interface{}) string { return fmt.Sprint(info) },
}

// SessionsResult is the sessions checker's verdict.
type SessionsResult struct {
	Valid bool `json:"valid"`
	// Result is porcupine's answer: "Ok", "Illegal" or "Unknown" (timed out).
	Result     string `json:"result"`
	Operations int    `json:"operations"`
	Unknown    int    `json:"unknown"`
	Sessions   int    `json:"sessions"`

	info porcupine.LinearizationInfo
}

// Visualize writes porcupine's HTML view of the history to path.
func (r SessionsResult) Visualize(path string) error {
	if err := porcupine.VisualizePath(SessionModel, r.info, path); err != nil {
		return fmt.Errorf("checker: visualize sessions: %w", err)
	}
	return nil
}

// SessionOperations turns the session events of ops into porcupine
// operations. An operation whose outcome is unknown (info, or still open at
// the end) gets an infinite return time, so it may take effect at any point
// after its call, as etcd's robustness tests do, instead of being dropped.
func SessionOperations(ops []history.Op) []porcupine.Operation {
	open := map[int]history.Op{}
	var out []porcupine.Operation
	finish := func(inv history.Op, ret int64, o sessionOutput) {
		out = append(out, porcupine.Operation{
			ClientId: inv.Process,
			Input:    sessionInput{F: inv.F, Priority: inv.Value.Priority},
			Call:     inv.Time,
			Output:   o,
			Return:   ret,
			Metadata: inv.Value.Session,
		})
	}
	for _, op := range ops {
		switch op.F {
		case history.Create, history.Update, history.Get, history.Close:
		default:
			continue
		}
		if op.Type == history.Invoke {
			open[op.Process] = op
			continue
		}
		inv, ok := open[op.Process]
		if !ok || inv.F != op.F {
			continue
		}
		delete(open, op.Process)
		switch op.Type {
		case history.OK:
			finish(inv, op.Time, sessionOutput{State: op.Value.State, Priority: op.Value.Priority})
		case history.Fail:
			finish(inv, op.Time, sessionOutput{Code: op.Value.Code})
		default:
			finish(inv, math.MaxInt64, sessionOutput{Unknown: true})
		}
	}
	for _, inv := range open {
		finish(inv, math.MaxInt64, sessionOutput{Unknown: true})
	}
	return out
}

// Sessions checks that the session operations in ops are linearizable,
// giving porcupine at most timeout (0: no limit).
func Sessions(ops []history.Op, timeout time.Duration) SessionsResult {
	pops := SessionOperations(ops)
	res, info := porcupine.CheckOperationsVerbose(SessionModel, pops, timeout)
	r := SessionsResult{Result: string(res), Operations: len(pops), info: info}
	seen := map[string]bool{}
	for _, op := range pops {
		if op.Output.(sessionOutput).Unknown {
			r.Unknown++
		}
		seen[op.Metadata.(string)] = true
	}
	r.Sessions = len(seen)
	r.Valid = res == porcupine.Ok
	return r
}
