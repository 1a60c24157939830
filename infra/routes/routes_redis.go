package routes

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
	goredis "github.com/redis/go-redis/v9"
)

// Redis is the Table of a cluster, keyed as in the design notes:
//
//	<prefix>route:<uniqueId>   string  instance "ip:port"   TTL RouteTTL
//	<prefix>online:<account>   set     uniqueIds            TTL OnlineTTL for the whole set
//	<prefix>alive:<instance>   string  "1"                  TTL AliveTTL, refreshed by the instance
type Redis struct {
	rdb    goredis.UniversalClient
	prefix string
	dir    Directory
}

// NewRedis returns a table on rdb under prefix; dir reloads missed online sets.
func NewRedis(rdb goredis.UniversalClient, prefix string, dir Directory) *Redis {
	if dir == nil {
		dir = NoDirectory{}
	}
	return &Redis{rdb: rdb, prefix: prefix, dir: dir}
}

func (r *Redis) routeKey(uid domain.UniqueID) string { return r.prefix + "route:" + string(uid) }
func (r *Redis) onlineKey(a domain.AccountID) string { return r.prefix + "online:" + string(a) }
func (r *Redis) aliveKey(instance string) string     { return r.prefix + "alive:" + instance }

// claimScript takes the route unless a live other instance holds it.
// KEYS: route, online, alive-prefix; ARGV: instance, uid, force, routeTTLms, onlineTTLms.
var claimScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3] .. cur) == 1 then
  return {0, cur}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
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
		instance, string(uid), f, RouteTTL.Milliseconds(), OnlineTTL.Milliseconds()).Slice()
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
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
`)

// Release implements Table.
func (r *Redis) Release(ctx context.Context, uid domain.UniqueID, instance string) error {
	a, _ := uid.Split()
	if err := releaseScript.Run(ctx, r.rdb, []string{r.routeKey(uid), r.onlineKey(a)}, instance, string(uid)).Err(); err != nil {
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
	members, err := r.rdb.SMembers(ctx, r.onlineKey(account)).Result()
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
	keys := make([]string, len(uids))
	for i, u := range uids {
		keys[i] = r.routeKey(u)
	}
	vals, err := r.rdb.MGet(ctx, keys...).Result()
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

// Beat implements Table.
func (r *Redis) Beat(ctx context.Context, instance string) error {
	if err := r.rdb.Set(ctx, r.aliveKey(instance), "1", AliveTTL).Err(); err != nil {
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

// Forget removes instance's liveness key, when it shuts down cleanly.
func (r *Redis) Forget(ctx context.Context, instance string) error {
	return r.rdb.Del(ctx, r.aliveKey(instance)).Err()
}
