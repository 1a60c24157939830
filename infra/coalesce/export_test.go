package coalesce

// Queued is how many requests wait for a run, for tests that need some
// to queue before a run ends.
func Queued[Q, A any](c *Coalescer[Q, A]) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
