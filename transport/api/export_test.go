package api

// WaitForCompletions waits for the reservation completions still being
// written after their acks (Config.CompleteAfterAck).
func (s *Service) WaitForCompletions() { s.completing.Wait() }

// SetMaxUndecided lowers the bound of the sends that wait for the log to
// settle their records.
func (s *Service) SetMaxUndecided(n int) { s.maxUndecided = n }

// Waiting counts the sends that wait for the log to settle their records,
// and the leases the service renews.
func (s *Service) Waiting() (undecided, leases int) {
	s.leases.mu.Lock()
	leases = len(s.leases.held)
	s.leases.mu.Unlock()
	return int(s.undecidedN.Load()), leases
}
