package node

import (
	"time"

	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/retention"
)

// CacheRetention is how long the cache keeps a message under a history
// retention of keep (0: forever): its 7 days, or keep if shorter. A cache
// that kept longer than the history would serve, after a replay of the
// cache, messages the store no longer holds.
func CacheRetention(keep time.Duration) time.Duration {
	if keep > 0 && keep < cache.Retention {
		return keep
	}
	return cache.Retention
}

// retentionJob adds the history retention job to the work of a process
// that writes the history: a single node, or a projector. Every
// projector runs one; their steps are idempotent.
func (n *Node) retentionJob(set *readModelSet) error {
	if n.cfg.Retention.Keep == 0 || !n.cfg.Roles.Projector {
		return nil
	}
	cfg := n.cfg.Retention
	cfg.Observer, cfg.Logger = n.metrics, n.log
	job, err := retention.New(set.api.Store, set.api.Cache, cfg)
	if err != nil {
		return err
	}
	set.run = append(set.run, job.Run)
	n.log.Info("history retention on", "keep", cfg.Keep.String(), "interval", job.Interval().String())
	return nil
}
