package progress

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Redis keeps a read model's progress in one hash (field: partition,
// value: next offset) beside its keys, so it goes with them: after a
// FLUSHALL it reads 0 until written again.
//
// Redis may lose acknowledged writes: a failover promotes a replica that
// had not received the master's last writes, and a flush drops
// everything. The read model's data written in those moments is lost with
// the progress written after it (Redis replicates in order), so a hash
// that went backwards is the sign. With OnLoss, Save notices it — a value
// below the highest this backend has read or written — and lets the read
// model repair itself before it writes progress again.
type Redis struct {
	client redis.UniversalClient
	key    string
	onLoss LossFunc

	mu    sync.Mutex
	known map[int32]int64 // the highest value read or written, per partition
}

// LossFunc is told that the progress of partition went back to from: the
// read model may have lost what it applied from that offset on. It must
// stop vouching for that (or apply it again) before it returns nil; until
// it does, the partition's progress is not written.
type LossFunc func(ctx context.Context, partition int32, from int64) error

// NewRedis returns the backend whose hash is key.
func NewRedis(client redis.UniversalClient, key string) *Redis {
	return &Redis{client: client, key: key, known: map[int32]int64{}}
}

// OnLoss makes Save call f for every partition whose stored progress went
// backwards, and returns r.
func (r *Redis) OnLoss(f LossFunc) *Redis {
	r.onLoss = f
	return r
}

// saveRedisScript writes each (partition, next, known) triple of ARGV unless
// the hash holds a greater or equal value, and returns, for each, the
// partition, the value after and 1 — or, when the hash holds less than
// known (it lost writes) and known is positive, the value it holds and 0,
// without writing. Offsets are below 2^53 and compare exactly as Lua
// numbers.
var saveRedisScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 3 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
  local ok = 1
  if cur < tonumber(ARGV[i + 2]) then
    ok = 0
  elseif cur < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    cur = tonumber(ARGV[i + 1])
  end
  out[#out + 1] = ARGV[i]
  out[#out + 1] = string.format('%d', cur)
  out[#out + 1] = ok
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
	r.learn(out)
	return out, nil
}

// learn raises known to what got says.
func (r *Redis) learn(got map[int32]int64) {
	if r.onLoss == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for part, n := range got {
		r.known[part] = max(r.known[part], n)
	}
}

// Save implements Backend. A partition whose hash value went backwards is
// written only after OnLoss returns nil for it; an OnLoss that fails
// fails the Save, and the next one tries again.
func (r *Redis) Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error) {
	out, lost, err := r.save(ctx, next)
	if err != nil || len(lost) == 0 {
		return out, err
	}
	again := make(map[int32]int64, len(lost))
	for part, from := range lost {
		if err := r.onLoss(ctx, part, from); err != nil {
			return nil, fmt.Errorf("progress of partition %d went back to %d, and the read model could not repair: %w", part, from, err)
		}
		r.mu.Lock()
		r.known[part] = from // accepted: the read model no longer vouches above it
		r.mu.Unlock()
		again[part] = next[part]
	}
	after, lost, err := r.save(ctx, again)
	if err != nil {
		return nil, err
	}
	if len(lost) > 0 {
		return nil, fmt.Errorf("progress went backwards again while it was repaired (partitions %v)", keys(lost))
	}
	for part, n := range after {
		out[part] = n
	}
	return out, nil
}

// save runs the script once: out is what is stored after, lost the
// partitions found below what was known, with what they hold.
func (r *Redis) save(ctx context.Context, next map[int32]int64) (out, lost map[int32]int64, err error) {
	args := make([]any, 0, 3*len(next))
	r.mu.Lock()
	for part, off := range next {
		known := int64(0)
		if r.onLoss != nil {
			known = r.known[part]
		}
		args = append(args, int64(part), off, known)
	}
	r.mu.Unlock()
	vals, err := saveRedisScript.Run(ctx, r.client, []string{r.key}, args...).Slice()
	if err != nil {
		return nil, nil, err
	}
	out = make(map[int32]int64, len(vals)/3)
	for i := 0; i+2 < len(vals); i += 3 {
		field, _ := vals[i].(string)
		value, _ := vals[i+1].(string)
		ok, _ := vals[i+2].(int64)
		part, err := strconv.ParseInt(field, 10, 32)
		if err != nil {
			continue
		}
		n := parseOffset(value)
		if ok == 0 {
			if lost == nil {
				lost = map[int32]int64{}
			}
			lost[int32(part)] = n
			continue
		}
		out[int32(part)] = n
	}
	r.learn(out)
	return out, lost, nil
}

func keys(m map[int32]int64) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
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
