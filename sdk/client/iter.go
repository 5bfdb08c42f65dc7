package client

import (
	"context"
	"iter"

	"github.com/gridd/gridd/sdk/internal/conn"
)

// All ranges over the session's results, each once, as they arrive:
//
//	for r, err := range s.All(ctx) {
//		if err != nil {
//			return err // ctx ended
//		}
//		use(r)
//	}
//
// The sequence ends when the Results channel closes (Close, Detach, or the
// session ended on the server), or yields the context's error once when ctx
// ends first. Breaking out of the loop leaves the results not read with the
// channel, for a later All or Results. All shares the Results channel:
// read results through one or the other.
func (s *Session) All(ctx context.Context) iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		for {
			select {
			case r, ok := <-s.results.out:
				if !ok || !yield(r, nil) {
					return
				}
			case <-ctx.Done():
				yield(Result{}, &conn.CtxError{Op: "results of session " + s.id, Ctx: ctx.Err()})
				return
			}
		}
	}
}
