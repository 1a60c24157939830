package api

// WaitForCompletions waits for the reservation completions still being
// written after their acks (Config.CompleteAfterAck).
func (s *Service) WaitForCompletions() { s.completing.Wait() }

// SetMaxUndecided lowers the bound of the sends that wait for the log to
// settle their records.
func (s *Service) SetMaxUndecided(n int) { s.maxUndecided = n }
