package main

import (
	"fmt"
	"slices"

	"github.com/gridd/gridd/jepsen/history"
)

// plantKinds are the bugs --plant can plant in a recorded history before it
// is checked: a self-test that the whole pipeline (recording, checking,
// verdict, exit status) reports FAIL, on a real run's history.
var plantKinds = []string{"lost", "duplicate", "stale-read", "shared-wrong-bytes"}

// plant returns ops with the bug kind planted: "lost" drops the first
// delivered result, "duplicate" delivers the first result twice,
// "stale-read" makes the first successful get report a priority no client
// ever writes (the workload writes 1..10), "shared-wrong-bytes" makes the
// first successful shared-data read report bytes no level was written with.
func plant(ops []history.Op, kind string) ([]history.Op, error) {
	ops = slices.Clone(ops)
	for i, op := range ops {
		switch {
		case kind == "lost" && op.F == history.Result:
			return slices.Delete(ops, i, i+1), nil
		case kind == "duplicate" && op.F == history.Result:
			return append(ops, op), nil
		case kind == "stale-read" && op.F == history.Get && op.Type == history.OK:
			ops[i].Value.Priority = 99
			return ops, nil
		case kind == "shared-wrong-bytes" && op.F == history.SharedRead && op.Type == history.OK:
			ops[i].Value.Digest = "planted"
			return ops, nil
		}
	}
	return nil, fmt.Errorf("--plant %s: the history has no operation to plant it in (known: %v)", kind, plantKinds)
}
