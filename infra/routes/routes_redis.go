package routes

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	parleyredis "github.com/parley-chat/parley/infra/redis"
	goredis "github.com/redis/go-redis/v9"
)

// Redis is the Table of a cluster, keyed as in the design notes:
//
//	<prefix>route:<uniqueId>   string  instance "ip:port"   TTL RouteTTL
//	<prefix>online:<account>   set     uniqueIds            TTL OnlineTTL for the whole set
//	<prefix>alive:<instance>   string  "1"                  TTL AliveTTL, refreshed by the instance
//	<prefix>instances          zset    instance → last beat (Unix ms), until reaped
//	<prefix>devices:<instance> set     uniqueIds routed to the instance, until reaped
//	<prefix>presence:<account> hash    on "1"/"0", seen (Unix ms); no TTL
//	<prefix>presence           pub/sub channel: "<1|0> <seen> <account>" per change
type Redis struct {
	rdb    goredis.UniversalClient
	prefix string
	dir    Directory
	// reads carries Online's and Lookup's reads: every push makes them,
	// one after the other, from each partition's projector at once, so
	// they share round trips.
	reads *parleyredis.Pipeline
}

// readRuns is how many pipelines of route reads may be in flight at once.
const readRuns = 4

// NewRedis returns a table on rdb under prefix; dir reloads missed online sets.
func NewRedis(rdb goredis.UniversalClient, prefix string, dir Directory) *Redis {
	if dir == nil {
		dir = NoDirectory{}
	}
	return &Redis{rdb: rdb, prefix: prefix, dir: dir, reads: parleyredis.NewPipeline(rdb, readRuns)}
}

func (r *Redis) routeKey(uid domain.UniqueID) string { return r.prefix + "route:" + string(uid) }
func (r *Redis) onlineKey(a domain.AccountID) string { return r.prefix + "online:" + string(a) }
func (r *Redis) aliveKey(instance string) string     { return r.prefix + "alive:" + instance }
func (r *Redis) instancesKey() string                { return r.prefix + "instances" }
func (r *Redis) presenceKey(a domain.AccountID) string {
	return r.prefix + "presence:" + string(a)
}

// presenceLua is the part of the scripts that keeps presence, in the same
// step as the route it follows. ARGV[1] is the key prefix. Times are Unix
// milliseconds, kept as strings.
const presenceLua = `
local P = ARGV[1]
local function routed(account)
  for _, m in ipairs(redis.call('SMEMBERS', P .. 'online:' .. account)) do
    if redis.call('EXISTS', P .. 'route:' .. m) == 1 then return true end
  end
  return false
end
local function arrived(account)
  local k = P .. 'presence:' .. account
  if redis.call('HGET', k, 'on') ~= '1' then
    redis.call('HSET', k, 'on', '1')
    redis.call('PUBLISH', P .. 'presence', '1 ' .. (redis.call('HGET', k, 'seen') or '0') .. ' ' .. account)
  end
end
local function left(account, at)
  local k = P .. 'presence:' .. account
  local seen = redis.call('HGET', k, 'seen') or '0'
  if tonumber(at) > tonumber(seen) then
    seen = at
    redis.call('HSET', k, 'seen', at)
  end
  if redis.call('HGET', k, 'on') == '1' and not routed(account) then
    redis.call('HSET', k, 'on', '0')
    redis.call('PUBLISH', P .. 'presence', '0 ' .. seen .. ' ' .. account)
  end
end
local function release(uid, inst, at)
  if redis.call('GET', P .. 'route:' .. uid) == inst then
    local account = string.match(uid, '^([^/]*)/')
    redis.call('DEL', P .. 'route:' .. uid)
    redis.call('SREM', P .. 'online:' .. account, uid)
    redis.call('SREM', P .. 'devices:' .. inst, uid)
    left(account, at)
  end
end
`

// claimScript takes the route unless a live other instance holds it.
// KEYS: route, online, alive-prefix; ARGV: prefix, instance, uid, force,
// routeTTLms, onlineTTLms, account.
var claimScript = goredis.NewScript(presenceLua + `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[2] and ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[3] .. cur) == 1 then
  return {0, cur}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if cur and cur ~= ARGV[2] then redis.call('SREM', P .. 'devices:' .. cur, ARGV[3]) end
redis.call('SADD', P .. 'devices:' .. ARGV[2], ARGV[3])
arrived(ARGV[7])
return {1, cur or ''}
`)

// Claim implements Table.
func (r *Redis) Claim(ctx context.Context, uid domain.UniqueID, instance string, force bool) (string, error) {
	a, _ := uid.Split()
	f := "0"
	if force {
		f = "1"
	}
	res, err := claimScript.Run(ctx, r.rdb, []string{r.routeKey(uid), r.onlineKey(a), r.prefix + "alive:"},
		r.prefix, instance, string(uid), f, RouteTTL.Milliseconds(), OnlineTTL.Milliseconds(), string(a)).Slice()
	if err != nil {
		return "", fmt.Errorf("cannot claim route of %s: %w", uid, err)
	}
	ok, _ := res[0].(int64)
	prev, _ := res[1].(string)
	if ok == 0 {
		return prev, ErrHeld
	}
	return prev, nil
}

// releaseScript deletes the route only if instance still owns it.
// KEYS: route, online (for the record: the script derives them);
// ARGV: prefix, instance, uid, now.
var releaseScript = goredis.NewScript(presenceLua + `
release(ARGV[3], ARGV[2], ARGV[4])
return 1
`)

// Release implements Table.
func (r *Redis) Release(ctx context.Context, uid domain.UniqueID, instance string) error {
	a, _ := uid.Split()
	if err := releaseScript.Run(ctx, r.rdb, []string{r.routeKey(uid), r.onlineKey(a)}, r.prefix, instance, string(uid), nowMs()).Err(); err != nil {
		return fmt.Errorf("cannot release route of %s: %w", uid, err)
	}
	return nil
}

var refreshScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 1
`)

// Refresh implements Table.
func (r *Redis) Refresh(ctx context.Context, uid domain.UniqueID, instance string) error {
	a, _ := uid.Split()
	err := refreshScript.Run(ctx, r.rdb, []string{r.routeKey(uid), r.onlineKey(a)}, instance, string(uid),
		RouteTTL.Milliseconds(), OnlineTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("cannot refresh route of %s: %w", uid, err)
	}
	return nil
}

// Online implements Table.
func (r *Redis) Online(ctx context.Context, account domain.AccountID) ([]domain.UniqueID, error) {
	cmd := goredis.NewStringSliceCmd(ctx, "smembers", r.onlineKey(account))
	if err := r.reads.Do(ctx, cmd); err != nil {
		return nil, fmt.Errorf("cannot read online set of %s: %w", account, err)
	}
	members, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("cannot read online set of %s: %w", account, err)
	}
	if len(members) == 0 {
		uids, err := r.dir.Devices(ctx, account)
		if err != nil {
			return nil, fmt.Errorf("cannot reload online set of %s from the directory: %w", account, err)
		}
		if len(uids) == 0 {
			return nil, nil
		}
		args := make([]any, len(uids))
		for i, u := range uids {
			args[i] = string(u)
		}
		pipe := r.rdb.TxPipeline()
		pipe.SAdd(ctx, r.onlineKey(account), args...)
		pipe.PExpire(ctx, r.onlineKey(account), OnlineTTL)
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("cannot store online set of %s: %w", account, err)
		}
		return uids, nil
	}
	out := make([]domain.UniqueID, len(members))
	for i, m := range members {
		out[i] = domain.UniqueID(m)
	}
	return out, nil
}

// Lookup implements Table.
func (r *Redis) Lookup(ctx context.Context, uids []domain.UniqueID) (map[domain.UniqueID]string, error) {
	if len(uids) == 0 {
		return map[domain.UniqueID]string{}, nil
	}
	args := make([]any, 1+len(uids))
	args[0] = "mget"
	for i, u := range uids {
		args[1+i] = r.routeKey(u)
	}
	cmd := goredis.NewSliceCmd(ctx, args...)
	if err := r.reads.Do(ctx, cmd); err != nil {
		return nil, fmt.Errorf("cannot look routes up: %w", err)
	}
	vals, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("cannot look routes up: %w", err)
	}
	out := make(map[domain.UniqueID]string, len(uids))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[uids[i]] = s
		}
	}
	return out, nil
}

// Beat implements Table: it also records the beat's time, which is when an
// instance that stops beating was last known alive (its devices' LastSeen).
func (r *Redis) Beat(ctx context.Context, instance string) error {
	pipe := r.rdb.TxPipeline()
	pipe.Set(ctx, r.aliveKey(instance), "1", AliveTTL)
	pipe.ZAdd(ctx, r.instancesKey(), goredis.Z{Score: float64(time.Now().UnixMilli()), Member: instance})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("cannot mark %s alive: %w", instance, err)
	}
	return nil
}

// Alive implements Table.
func (r *Redis) Alive(ctx context.Context, instance string) (bool, error) {
	n, err := r.rdb.Exists(ctx, r.aliveKey(instance)).Result()
	if err != nil {
		return false, fmt.Errorf("cannot check %s: %w", instance, err)
	}
	return n == 1, nil
}

// Forget implements Table.
func (r *Redis) Forget(ctx context.Context, instance string) error {
	pipe := r.rdb.TxPipeline()
	pipe.Del(ctx, r.aliveKey(instance))
	pipe.ZAddXX(ctx, r.instancesKey(), goredis.Z{Score: float64(time.Now().UnixMilli()), Member: instance})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("cannot forget %s: %w", instance, err)
	}
	return nil
}

func nowMs() string { return strconv.FormatInt(time.Now().UnixMilli(), 10) }

// Presence implements Table.
func (r *Redis) Presence(ctx context.Context, accounts []domain.AccountID) ([]domain.Presence, error) {
	out := make([]domain.Presence, len(accounts))
	if len(accounts) == 0 {
		return out, nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(accounts))
	for i, a := range accounts {
		cmds[i] = pipe.HMGet(ctx, r.presenceKey(a), "on", "seen")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("cannot read presence: %w", err)
	}
	for i, a := range accounts {
		out[i] = domain.Presence{Account: a}
		vals := cmds[i].Val()
		if on, _ := vals[0].(string); on == "1" {
			out[i].Online = true
		}
		if seen, _ := vals[1].(string); seen != "" {
			out[i].LastSeen = unixMs(seen)
		}
	}
	return out, nil
}

func unixMs(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// parseChange reads one message of the presence channel.
func parseChange(payload string) (domain.Presence, bool) {
	on, rest, ok1 := strings.Cut(payload, " ")
	seen, account, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || (on != "0" && on != "1") {
		return domain.Presence{}, false
	}
	a, err := domain.ParseAccountID(account)
	if err != nil {
		return domain.Presence{}, false
	}
	return domain.Presence{Account: a, Online: on == "1", LastSeen: unixMs(seen)}, true
}

// WatchPresence implements Table with a subscription to the presence
// channel. Redis does not keep what a subscriber misses while its
// connection is down: go-redis subscribes again, and the confirmation of
// that new subscription calls resync.
func (r *Redis) WatchPresence(ctx context.Context, f func(domain.Presence), resync func()) (func(), error) {
	ps := r.rdb.Subscribe(ctx, r.prefix+"presence")
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("cannot watch presence: %w", err)
	}
	var resyncs sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resyncs.Wait()
		ch := ps.ChannelWithSubscriptions()
		for {
			select {
			case <-ctx.Done():
				_ = ps.Close()
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				switch m := m.(type) {
				case *goredis.Message:
					if p, ok := parseChange(m.Payload); ok {
						f(p)
					}
				case *goredis.Subscription:
					// Only a new connection subscribes again: the first
					// confirmation was read above.
					if m.Kind == "subscribe" && resync != nil {
						resyncs.Add(1)
						go func() { defer resyncs.Done(); resync() }()
					}
				}
			}
		}
	}()
	return func() { <-done }, nil
}

// reapBatch is how many routes one reap script releases: a dead gateway's
// devices are released in steps that each hold Redis briefly.
const reapBatch = 500

// reapScript releases up to ARGV[3] routes of instance ARGV[2] as of its
// last beat, unless it is alive (and ARGV[4] is not "1"). It returns the
// routes released, or -1 for a live instance. ARGV: prefix, instance,
// count, force, now.
var reapScript = goredis.NewScript(presenceLua + `
local inst = ARGV[2]
if ARGV[4] ~= '1' and redis.call('EXISTS', P .. 'alive:' .. inst) == 1 then return -1 end
local at = redis.call('ZSCORE', P .. 'instances', inst) or ARGV[5]
at = string.format('%d', tonumber(at))
local uids = redis.call('SPOP', P .. 'devices:' .. inst, tonumber(ARGV[3]))
for _, uid in ipairs(uids) do release(uid, inst, at) end
if ARGV[4] ~= '1' and redis.call('SCARD', P .. 'devices:' .. inst) == 0 then
  redis.call('ZREM', P .. 'instances', inst)
end
return #uids
`)

// Reap implements Table.
func (r *Redis) Reap(ctx context.Context) (int, error) {
	insts, err := r.rdb.ZRange(ctx, r.instancesKey(), 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("cannot list instances: %w", err)
	}
	if len(insts) == 0 {
		return 0, nil
	}
	pipe := r.rdb.Pipeline()
	alive := make([]*goredis.IntCmd, len(insts))
	for i, inst := range insts {
		alive[i] = pipe.Exists(ctx, r.aliveKey(inst))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("cannot check instances: %w", err)
	}
	total := 0
	for i, inst := range insts {
		if alive[i].Val() == 1 {
			continue
		}
		n, err := r.release(ctx, inst, false)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Forsake implements Table.
func (r *Redis) Forsake(ctx context.Context, instance string) (int, error) {
	return r.release(ctx, instance, true)
}

// release runs reapScript on instance until it has nothing left.
func (r *Redis) release(ctx context.Context, instance string, force bool) (int, error) {
	f := "0"
	if force {
		f = "1"
	}
	total := 0
	for {
		n, err := reapScript.Run(ctx, r.rdb, []string{r.prefix + "devices:" + instance}, r.prefix, instance, reapBatch, f, nowMs()).Int()
		if err != nil {
			return total, fmt.Errorf("cannot release the routes of %s: %w", instance, err)
		}
		if n <= 0 {
			return total, nil
		}
		total += n
	}
}
