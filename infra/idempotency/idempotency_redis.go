package idempotency

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	parleyredis "github.com/parley-chat/parley/infra/redis"
	goredis "github.com/redis/go-redis/v9"
)

// Redis keeps reservations in Redis, shared by every gateway of a cluster.
// A reservation is a hash under <prefix>idem:<account>:<clientMsgId> (ids
// never contain ':'): s is "p" (pending) or "d" (done), t the attempt's
// token, u its lease end (Redis server time, in ms, so that gateways'
// clocks need not agree), p the partitions attempts appended to, a the ack.
//
// Every send makes two calls (Reserve, then Complete), so the calls of
// concurrent sends share pipelines (infra/redis.Pipeline): under load one round
// trip carries many of them instead of each waiting for a pooled
// connection of its own. Each call is still one script, atomic on its
// own; a pipeline only saves round trips, it orders nothing and joins no
// two calls into one transaction.
type Redis struct {
	rdb    goredis.UniversalClient
	prefix string
	pipe   *parleyredis.Pipeline
}

// pipelineRuns is how many pipelines of reservation calls may be in
// flight at once.
const pipelineRuns = 4

// NewRedis returns the adapter over rdb with keys under prefix.
func NewRedis(rdb goredis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix, pipe: parleyredis.NewPipeline(rdb, pipelineRuns)}
}

func (r *Redis) key(k Key) string {
	return r.prefix + "idem:" + string(k.Account) + ":" + k.ClientMsgID
}

// script is a Lua script run by its SHA1, and by its text when Redis does
// not know it yet (after a restart or SCRIPT FLUSH).
type script struct {
	src, sha string
}

func newScript(src string) script {
	return script{src: src, sha: goredis.NewScript(src).Hash()}
}

// run runs s on keys with args in a shared pipeline.
func (r *Redis) run(ctx context.Context, s script, keys []string, args ...any) *goredis.Cmd {
	cmd := r.do(ctx, "evalsha", s.sha, keys, args)
	if err := cmd.Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not run: Redis refused it before running anything.
		cmd = r.do(ctx, "eval", s.src, keys, args)
	}
	return cmd
}

func (r *Redis) do(ctx context.Context, verb, script string, keys []string, args []any) *goredis.Cmd {
	all := make([]any, 0, 3+len(keys)+len(args))
	all = append(all, verb, script, len(keys))
	for _, k := range keys {
		all = append(all, k)
	}
	all = append(all, args...)
	cmd := goredis.NewCmd(ctx, all...)
	if err := r.pipe.Do(ctx, cmd); err != nil {
		// cmd may still be written by its pipeline: answer with another.
		gaveUp := goredis.NewCmd(ctx)
		gaveUp.SetErr(err)
		return gaveUp
	}
	return cmd
}

// reserveScript: ARGV token, partition, lease ms, ttl ms. Returns
// {"done", ack}, {"pending"} or {"reserved", earlier partitions}.
var reserveScript = newScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('HMGET', KEYS[1], 's', 'u', 'p', 'a')
if e[1] == 'd' then return {'done', e[4]} end
if e[1] == 'p' and tonumber(e[2]) > now then return {'pending'} end
local earlier = e[3] or ''
local parts = earlier
if not string.find(','..earlier..',', ','..ARGV[2]..',', 1, true) then
  if parts == '' then parts = ARGV[2] else parts = parts..','..ARGV[2] end
end
redis.call('HSET', KEYS[1], 's', 'p', 't', ARGV[1], 'u', now + tonumber(ARGV[3]), 'p', parts)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'reserved', earlier}
`)

// Reserve implements Reservations.
func (r *Redis) Reserve(ctx context.Context, k Key, partition int32, lease, ttl time.Duration) (Entry, error) {
	token := newToken()
	res, err := r.run(ctx, reserveScript, []string{r.key(k)}, token, partition, lease.Milliseconds(), ttl.Milliseconds()).StringSlice()
	if err != nil {
		return Entry{}, fmt.Errorf("cannot reserve a client message id: %w", err)
	}
	switch {
	case len(res) == 2 && res[0] == "done":
		ack, err := decodeAck(res[1])
		if err != nil {
			return Entry{}, err
		}
		return Entry{State: Done, Ack: ack}, nil
	case len(res) == 1 && res[0] == "pending":
		return Entry{State: Pending}, nil
	case len(res) == 2 && res[0] == "reserved":
		earlier, err := decodeParts(res[1])
		if err != nil {
			return Entry{}, err
		}
		return Entry{State: Reserved, Token: token, Earlier: earlier}, nil
	}
	return Entry{}, fmt.Errorf("cannot reserve a client message id: unexpected answer %q", res)
}

// ownedScript runs ARGV[2] on a pending reservation held by ARGV[1]:
// "extend" (ARGV[3] lease ms), "complete" (ARGV[3] ack, ARGV[4] ttl ms) or
// "abandon". Returns 1, or 0 when the token does not hold the key.
var ownedScript = newScript(`
local e = redis.call('HMGET', KEYS[1], 's', 't')
if e[1] ~= 'p' or e[2] ~= ARGV[1] then return 0 end
local op = ARGV[2]
if op == 'extend' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'u', now + tonumber(ARGV[3]))
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
elseif op == 'complete' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 's', 'd', 'a', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
elseif op == 'abandon' then
  redis.call('HSET', KEYS[1], 'u', 0, 't', '')
end
return 1
`)

func (r *Redis) owned(ctx context.Context, k Key, token string, args ...any) error {
	n, err := r.run(ctx, ownedScript, []string{r.key(k)}, append([]any{token}, args...)...).Int()
	if err != nil {
		return fmt.Errorf("cannot update a client message id's reservation: %w", err)
	}
	if n == 0 {
		return ErrNotOwner
	}
	return nil
}

// Extend implements Reservations.
func (r *Redis) Extend(ctx context.Context, k Key, token string, lease time.Duration) error {
	return r.owned(ctx, k, token, "extend", lease.Milliseconds())
}

// Complete implements Reservations.
func (r *Redis) Complete(ctx context.Context, k Key, token string, ack Ack, ttl time.Duration) error {
	return r.owned(ctx, k, token, "complete", encodeAck(ack), ttl.Milliseconds())
}

// Abandon implements Reservations.
func (r *Redis) Abandon(ctx context.Context, k Key, token string) error {
	return r.owned(ctx, k, token, "abandon")
}

var forgetScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 's') == 'd' then redis.call('DEL', KEYS[1]) end
return 1
`)

// forgetBatch is how many reservations one pipeline forgets.
const forgetBatch = 512

// Forget implements Reservations: pipelined, forgetBatch keys a round
// trip, the script by its SHA1 (forgetting is idempotent: a batch may be
// sent again).
func (r *Redis) Forget(ctx context.Context, keys ...Key) error {
	for len(keys) > 0 {
		n := min(len(keys), forgetBatch)
		err := parleyredis.EvalShaPipelined(ctx, r.rdb, forgetScript, n, func(i int) ([]string, []any) {
			return []string{r.key(keys[i])}, nil
		})
		if err != nil {
			return fmt.Errorf("cannot forget client message ids' reservations: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// encodeAck writes "<msgid> <messageId> <serverTime ms> <conversation>".
func encodeAck(a Ack) string {
	return strconv.FormatInt(int64(a.MsgID), 10) + " " + a.MessageID.String() + " " +
		strconv.FormatInt(a.ServerTime.UnixMilli(), 10) + " " + a.Conversation.String()
}

func decodeAck(s string) (Ack, error) {
	f := strings.Split(s, " ")
	if len(f) != 4 {
		return Ack{}, fmt.Errorf("cannot read a reservation's ack %q", s)
	}
	msgid, err1 := strconv.ParseInt(f[0], 10, 64)
	id, err2 := uuid.Parse(f[1])
	ms, err3 := strconv.ParseInt(f[2], 10, 64)
	conv, err4 := domain.ParseConversationID(f[3])
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return Ack{}, fmt.Errorf("cannot read a reservation's ack %q: %w", s, err)
		}
	}
	return Ack{MsgID: domain.MsgID(msgid), MessageID: id, Conversation: conv, ServerTime: time.UnixMilli(ms)}, nil
}

func decodeParts(s string) ([]int32, error) {
	if s == "" {
		return nil, nil
	}
	var out []int32
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("cannot read a reservation's partitions %q: %w", s, err)
		}
		out = append(out, int32(n))
	}
	return out, nil
}
