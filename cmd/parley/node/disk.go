package node

import (
	"path/filepath"

	"github.com/parley-chat/parley/infra/diskfree"
)

// diskGuard looks after the free space of a single node's embedded log
// and store (Config.MinFreeDisk); nil when it is off, or when the node
// keeps neither on its disk. The service asks it before every write
// (api.Config.WriteGate): a write refused unavailable does nothing, and
// the read models keep the floor's room to apply what was accepted.
func (n *Node) diskGuard() *diskfree.Guard {
	if n.cfg.MinFreeDisk <= 0 {
		return nil
	}
	var dirs []string
	if n.broker != nil {
		dirs = append(dirs, n.cfg.EmbeddedBroker.DataDir)
	}
	if n.stores.embedded != nil {
		dirs = append(dirs, filepath.Join(n.cfg.DataDir, storeDir))
	}
	if len(dirs) == 0 {
		return nil
	}
	return diskfree.New(diskfree.Config{Dirs: dirs, Floor: uint64(n.cfg.MinFreeDisk), Logger: n.log})
}
