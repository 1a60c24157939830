package api

// WaitForCompletions waits for the reservation completions still being
// written after their acks (Config.CompleteAfterAck).
func (s *Service) WaitForCompletions() { s.completing.Wait() }
