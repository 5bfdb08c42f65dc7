package dispatch

// Holders returns, for those of ids that a worker connected to this leader
// holds right now, the id of that worker. Tasks that are queued, unknown or
// finished are absent. Only the leader's dispatcher knows this: on a
// follower, or before activation, the map is empty.
func (d *Dispatcher) Holders(sessionID string, ids []string) map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	s := d.sessions[sessionID]
	if !d.active || s == nil {
		return out
	}
	for _, id := range ids {
		if ts := s.tasks[id]; ts != nil && ts.stream != nil {
			out[id] = ts.stream.workerID
		}
	}
	return out
}
