package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// EvalShaPipelined runs s n times in one pipeline, call i with the keys
// and args call(i) gives, by the script's SHA1: sending its text with
// EVAL would have Redis hash it for every call. If the server lost its
// scripts (NOSCRIPT: a restart, SCRIPT FLUSH) it loads s and sends the
// whole pipeline again, so every call of s must be safe to run twice.
// (goredis.Script.Run falls back to EVAL only outside a pipeline, where
// the error is known at once.)
func EvalShaPipelined(ctx context.Context, rdb goredis.UniversalClient, s *goredis.Script, n int, call func(i int) (keys []string, args []any)) error {
	run := func() error {
		_, err := rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i := range n {
				keys, args := call(i)
				s.EvalSha(ctx, p, keys, args...)
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		if lerr := s.Load(ctx, rdb).Err(); lerr != nil {
			return fmt.Errorf("cannot load a script: %w", lerr)
		}
		err = run()
	}
	return err
}
