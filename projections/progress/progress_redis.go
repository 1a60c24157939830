package progress

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keeps a read model's progress in one hash (field: partition,
// value: next offset) beside its keys, so it goes with them: after a
// FLUSHALL it reads 0 until written again.
//
// Redis may lose acknowledged writes: a failover promotes a replica that
// had not received the master's last writes, a master restarted from its
// append-only file lacks its last second, and a flush drops everything.
// The read model's data written in those moments may be gone while the
// progress written before them is not. With OnLoss, Save notices such a
// moment and lets the read model repair itself before it writes progress
// again. A partition's progress is suspect, from the value the hash now
// holds, when
//
//   - the hash holds less than this backend last read back from a write
//     (a flush, or a failover that took progress writes too);
//   - the Redis server answering is not the one this backend last wrote
//     the partition on (its run id: a failover or a restart); or
//   - the hash names, beside the partition, another server than the one
//     answering (the same, seen by a process that started after it).
//
// Only a Save that would move the partition forward reports it: a process
// whose progress is at or below what the hash holds wrote nothing the
// hash does not already cover.
type Redis struct {
	client redis.UniversalClient
	key    string
	onLoss LossFunc
	// hold, set by the tracker, keeps its view of a partition at the
	// loss's offset while the read model repairs, and releases it.
	hold func(partition int32, at int64, on bool)

	mu    sync.Mutex
	known map[int32]written
}

// written is what a Save last read back for a partition: the value and
// the run id of the server that answered.
type written struct {
	next int64
	run  string
}

// LossFunc is told, for each partition in lost, that its progress went
// back to the offset given: the read model may have lost what it applied
// from there on. It must stop vouching for that (or apply it again)
// before it returns nil; until it does, those partitions' progress is not
// written.
type LossFunc func(ctx context.Context, lost map[int32]int64) error

// LossTimeout bounds one call of a LossFunc: a repair that drops a large
// cache takes longer than a progress write.
const LossTimeout = 2 * time.Minute

// NewRedis returns the backend whose hash is key.
func NewRedis(client redis.UniversalClient, key string) *Redis {
	return &Redis{client: client, key: key, known: map[int32]written{}}
}

// OnLoss makes Save call f for the partitions whose stored progress may
// have lost writes, and returns r.
func (r *Redis) OnLoss(f LossFunc) *Redis {
	r.onLoss = f
	return r
}

// holdWith is how a Tracker learns of losses (see Tracker.hold).
func (r *Redis) holdWith(hold func(partition int32, at int64, on bool)) { r.hold = hold }

// runSuffix names the field, beside a partition's, that holds the run id
// of the server its progress was last moved forward on.
const runSuffix = ":run"

// saveRedisScript takes (partition, next, known, known run, mode)
// quintuples in ARGV. For each it writes next, with the answering
// server's run id, unless the hash holds as much already — or, when next
// is ahead of the hash and the progress is suspect, it writes nothing and
// reports 0. Mode "-" checks nothing (no read model to repair); "" checks
// as Redis says; "r:<run id>" says that the partition was repaired, on
// that server, from known on: it is suspect only if another server
// answers now or the hash went below known meanwhile. It returns, for each, the
// partition, the value after, 1 or 0, and the run id ("" when the user
// may not run INFO: then only a hash that went back is noticed). Offsets
// are below 2^53 and compare exactly as Lua numbers.
var saveRedisScript = redis.NewScript(`
local run = ''
local ok, info = pcall(redis.call, 'INFO', 'server')
if ok and type(info) == 'string' then
  run = string.match(info, 'run_id:(%x+)') or ''
end
local out = {}
for i = 1, #ARGV, 5 do
  local part = ARGV[i]
  local nxt = tonumber(ARGV[i + 1])
  local known = tonumber(ARGV[i + 2])
  local knownRun = ARGV[i + 3]
  local mode = ARGV[i + 4]
  local cur = tonumber(redis.call('HGET', KEYS[1], part) or '0') or 0
  local suspect = false
  if mode == '' then
    local curRun = redis.call('HGET', KEYS[1], part .. '` + runSuffix + `') or ''
    suspect = cur < known or (knownRun ~= '' and knownRun ~= run) or (curRun ~= '' and curRun ~= run)
  elseif mode ~= '-' then
    suspect = cur < known or string.sub(mode, 3) ~= run
  end
  local written = 1
  if nxt > cur and suspect then
    written = 0
  elseif nxt > cur then
    redis.call('HSET', KEYS[1], part, ARGV[i + 1], part .. '` + runSuffix + `', run)
    cur = nxt
  end
  out[#out + 1] = part
  out[#out + 1] = string.format('%d', cur)
  out[#out + 1] = written
  out[#out + 1] = run
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
			continue // a run id, or not ours
		}
		out[int32(part)] = parseOffset(v)
	}
	return out, nil
}

// Save implements Backend. A partition whose progress is suspect is
// written only after OnLoss returns nil for it; from then until it is
// written, the tracker's view of it stays at the loss. An OnLoss that
// fails, or a switch of servers while it ran, fails the Save, and the
// next one tries again.
func (r *Redis) Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error) {
	out, lost, err := r.save(ctx, next, nil)
	if err != nil || len(lost) == 0 {
		return out, err
	}
	from := make(map[int32]int64, len(lost))
	for part, l := range lost {
		from[part] = l.from
		r.holdAt(part, l.from)
	}
	// The repair and the write after it have their own deadlines: a
	// repair that drops a large cache outlasts a progress write's, and a
	// write that timed out after it would only start it again.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LossTimeout)
	defer cancel()
	if err := r.onLoss(lctx, from); err != nil {
		return nil, fmt.Errorf("progress may have lost writes from %v, and the read model could not repair: %w", from, err)
	}
	again := make(map[int32]int64, len(lost))
	for part := range lost {
		again[part] = next[part]
	}
	wctx, cancelWrite := context.WithTimeout(context.WithoutCancel(ctx), repairedWriteTimeout)
	defer cancelWrite()
	after, still, err := r.save(wctx, again, lost)
	if err != nil {
		return nil, fmt.Errorf("cannot write progress after a repair: %w", err)
	}
	if len(still) > 0 {
		return nil, fmt.Errorf("Redis switched servers or lost writes again while the read model repaired (partitions from %v)", from)
	}
	for part, n := range after {
		out[part] = n
	}
	return out, nil
}

// holdAt holds the tracker's view of part at from until a Save writes
// it (or finds it written).
func (r *Redis) holdAt(part int32, from int64) {
	if r.hold != nil {
		r.hold(part, from, true)
	}
}

// repairedWriteTimeout bounds the progress write after a repair.
const repairedWriteTimeout = 10 * time.Second

// loss is a suspect partition: what the hash holds, and the server that
// said so.
type loss struct {
	from int64
	run  string
}

// save runs the script once for next — the partitions in repaired as
// repaired on the server named there — : out is what is stored after,
// lost the suspect partitions.
func (r *Redis) save(ctx context.Context, next map[int32]int64, repaired map[int32]loss) (out map[int32]int64, lost map[int32]loss, err error) {
	args := make([]any, 0, 5*len(next))
	r.mu.Lock()
	for part, off := range next {
		k, mode := r.known[part], ""
		if l, ok := repaired[part]; ok {
			k, mode = written{next: l.from}, "r:"+l.run
		}
		if r.onLoss == nil {
			mode = "-"
		}
		args = append(args, int64(part), off, k.next, k.run, mode)
	}
	r.mu.Unlock()
	vals, err := saveRedisScript.Run(ctx, r.client, []string{r.key}, args...).Slice()
	if err != nil {
		return nil, nil, err
	}
	out = make(map[int32]int64, len(vals)/4)
	defer func() {
		if r.hold == nil {
			return
		}
		for part := range out {
			r.hold(part, 0, false) // after r.mu: the tracker's lock is never taken under it
		}
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i+3 < len(vals); i += 4 {
		field, _ := vals[i].(string)
		value, _ := vals[i+1].(string)
		ok, _ := vals[i+2].(int64)
		run, _ := vals[i+3].(string)
		part, err := strconv.ParseInt(field, 10, 32)
		if err != nil {
			continue
		}
		n := parseOffset(value)
		if ok == 0 {
			if lost == nil {
				lost = map[int32]loss{}
			}
			lost[int32(part)] = loss{from: n, run: run}
			continue
		}
		out[int32(part)] = n
		k := r.known[int32(part)]
		if k.run != run {
			k = written{run: run}
		}
		k.next = max(k.next, n)
		r.known[int32(part)] = k
	}
	return out, lost, nil
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
