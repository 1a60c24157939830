package node

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/runner"
)

// notifyStarted is the progress entry, beside the partitions', that marks
// that notifications started: no partition has this number.
const notifyStarted int32 = -1

// notifyReader adds the notify projection, when a webhook is configured
// and this process projects: on a reader of its own, so that a webhook
// that fails or hangs holds back only its own progress. Its progress is
// durable (beside a single node's store, in PostgreSQL in scale-out); at
// its first start it begins at the log's end rather than notifying the
// whole history.
func (n *Node) notifyReader(ctx context.Context, set *readModelSet) error {
	if n.cfg.Notify.URL == "" || !n.cfg.Roles.Projector {
		return nil
	}
	wcfg := n.cfg.Notify
	wcfg.Logger, wcfg.Observer = n.log, n.metrics
	hook, err := notify.NewWebhook(wcfg)
	if err != nil {
		return err
	}
	name := ProgressName(notify.Name, n.events.Epoch())
	var backend progress.Backend
	presence := notify.Routes{Table: n.stores.routes}
	if n.stores.embedded != nil {
		backend = progress.NewPebbleSaved(n.stores.embedded, name)
	} else {
		backend = progress.NewPostgres(n.stores.pool, name)
		presence.CheckAlive = true // a dead instance's routes outlive it
	}
	stored, err := backend.Load(ctx)
	if err != nil {
		return err
	}
	if _, started := stored[notifyStarted]; !started {
		// The first start: the log's end, and the mark that says so, in
		// one write, so that a later start never takes the end again
		// (a partition with nothing notified yet has no progress).
		first := map[int32]int64{notifyStarted: 1}
		for p, end := range set.ends {
			first[p] = end
		}
		if _, err := backend.Save(ctx, first); err != nil {
			return fmt.Errorf("cannot record where notifications start: %w", err)
		}
	}
	tr, err := progress.New(ctx, backend, progress.Config{Name: notify.Name, FlushInterval: 10 * time.Millisecond, Logger: n.log})
	if err != nil {
		return err
	}
	n.closers = append(n.closers, tr.Close)
	// Its own view of the groups: its reader is at another place in the
	// log than push's, and a shared cache would mix the two.
	members := &groups.At{Model: set.members.Model, Progress: set.members.Progress}
	proj := notify.NewProjection(notify.Config{
		Members: members, Presence: presence, Mutes: set.api.Mutes,
		Unread: set.api.Conversations, UnreadProgress: set.api.ConversationsProgress,
		Out: hook, Observer: n.metrics,
	})
	spec := runner.Spec{Name: notify.Name, Projection: proj, Tracker: tr}
	var src runner.Source
	if n.stores.embedded != nil {
		from, err := n.readFrom([]runner.Spec{spec}, set.ends)
		if err != nil {
			return err
		}
		src = n.followFrom(from)
	} else {
		// Records below the tracker (applied by another projector, or
		// before the first start) are skipped by the runner.
		src = n.events.GroupSource(notify.Name)
	}
	set.readers = append(set.readers, runner.Reader{Name: notify.Name, Topic: n.events.Topic(), Source: src, Specs: []runner.Spec{spec}})
	set.run = append(set.run, hook.Run)
	return nil
}
