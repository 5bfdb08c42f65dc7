package client

// splitTasks cuts tasks into batches of at most maxTasks tasks and, where
// possible, maxBytes of payload; a single task larger than maxBytes gets a
// batch of its own (the server judges whether it is too large). A batch
// carries one shared-data requirement, so a change of it starts a batch.
func splitTasks(tasks []Task, maxTasks, maxBytes int) [][]Task {
	var out [][]Task
	start, size := 0, 0
	for i, t := range tasks {
		n := len(t.Payload) + len(t.ID)
		if i > start && (i-start >= maxTasks || size+n > maxBytes || t.shared() != tasks[start].shared()) {
			out = append(out, tasks[start:i:i])
			start, size = i, 0
		}
		size += n
	}
	return append(out, tasks[start:len(tasks):len(tasks)])
}
