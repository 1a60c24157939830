package node

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/diskfree"
	"github.com/parley-chat/parley/transport/api"
)

// diskGuard looks after the free space of a single node's embedded log
// and store (Config.MinFreeDisk); nil when it is off, or when the node
// keeps neither on its disk.
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

// guardedLog refuses appends while the disk is nearly full: the send is
// answered unavailable, as when the log itself cannot be written, and
// the read models keep the room to apply what was accepted before.
type guardedLog struct {
	api.Log
	disk *diskfree.Guard
}

func (l guardedLog) Append(ctx context.Context, id string, e events.Event) (events.Position, error) {
	if err := l.disk.Err(); err != nil {
		return events.Position{}, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	return l.Log.Append(ctx, id, e)
}

func (l guardedLog) AppendEvery(ctx context.Context, id string, e events.Event) ([]events.Position, error) {
	if err := l.disk.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	return l.Log.AppendEvery(ctx, id, e)
}
