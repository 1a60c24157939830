package progress

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Redis keeps a read model's progress in one hash (field: partition,
// value: next offset) beside its keys, so it goes with them: after a
// FLUSHALL it reads 0 until written again.
type Redis struct {
	client redis.UniversalClient
	key    string
}

// NewRedis returns the backend whose hash is key.
func NewRedis(client redis.UniversalClient, key string) *Redis {
	return &Redis{client: client, key: key}
}

// saveRedisScript writes each (partition, next) pair of ARGV unless the hash
// holds a greater or equal value, and returns the values after. Offsets are
// below 2^53 and compare exactly as Lua numbers.
var saveRedisScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    cur = ARGV[i + 1]
  end
  out[#out + 1] = ARGV[i]
  out[#out + 1] = cur
end
return out
`)

// Load implements Backend.
func (r *Redis) Load(ctx context.Context) (map[int32]int64, error) {
	all, err := r.client.HGetAll(ctx, r.key).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(all))
	for field, v := range all {
		part, err := strconv.ParseInt(field, 10, 32)
		if err != nil {
			continue // not ours
		}
		out[int32(part)] = parseOffset(v)
	}
	return out, nil
}

// Save implements Backend.
func (r *Redis) Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error) {
	args := make([]any, 0, 2*len(next))
	for part, off := range next {
		args = append(args, int64(part), off)
	}
	vals, err := saveRedisScript.Run(ctx, r.client, []string{r.key}, args...).StringSlice()
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		part, err := strconv.ParseInt(vals[i], 10, 32)
		if err != nil {
			continue
		}
		out[int32(part)] = parseOffset(vals[i+1])
	}
	return out, nil
}

// parseOffset reads a stored value; a malformed one is 0, which proves
// nothing.
func parseOffset(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
