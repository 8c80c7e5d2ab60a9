package bus

// QueuedBatches is the number of batches waiting behind the one in flight.
func QueuedBatches(b *Bus) int {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	return len(b.queue)
}

// QueuedKeys is the number of keys in the batches waiting behind the one in flight.
func QueuedKeys(b *Bus) int {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	n := 0
	for _, bt := range b.queue {
		n += len(bt.keys)
	}
	return n
}
