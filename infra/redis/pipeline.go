package redis

import (
	"context"

	"github.com/parley-chat/parley/infra/coalesce"
	goredis "github.com/redis/go-redis/v9"
)

// Pipeline sends the commands of concurrent callers to Redis in shared
// pipelines (infra/coalesce): while one pipeline is in flight, the
// commands that arrive queue up and go out together in the next. A lone
// command goes at once. Each command stays what it is — a pipeline orders
// nothing and makes no transaction — so only the round trips are shared:
// on a busy machine, where a round trip to Redis costs milliseconds, many
// callers wait for one instead of each waiting for a connection of its
// own and then for its own.
type Pipeline struct {
	rdb  goredis.UniversalClient
	pipe *coalesce.Coalescer[goredis.Cmder, struct{}]
}

// NewPipeline returns a Pipeline over rdb with at most runs pipelines in
// flight at once, each on a connection of rdb's pipeline pool.
func NewPipeline(rdb goredis.UniversalClient, runs int) *Pipeline {
	p := &Pipeline{rdb: rdb}
	p.pipe = coalesce.New(coalesce.Config{MaxRuns: runs}, p.run)
	return p
}

// Do sends cmd and returns nil once cmd holds its answer (cmd.Err() and
// its value). When ctx ends first, Do returns ctx's error at once and
// cmd must not be touched again: a pipeline under way may still be
// writing its reply into it (a go-redis command is written by its reply),
// so the caller keeps its deadline without racing that write.
func (p *Pipeline) Do(ctx context.Context, cmd goredis.Cmder) error {
	_, err := p.pipe.Do(ctx, cmd)
	return err
}

func (p *Pipeline) run(ctx context.Context, cmds []goredis.Cmder) ([]struct{}, error) {
	// Each command carries its own answer or error; Pipelined's error is
	// only the first of them.
	_, _ = p.rdb.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		for _, c := range cmds {
			_ = pl.Process(ctx, c)
		}
		return nil
	})
	return make([]struct{}, len(cmds)), nil
}
