package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	parleyredis "github.com/parley-chat/parley/infra/redis"
	"github.com/redis/go-redis/v9"
)

// Key layout of the Redis cache, under RedisConfig.Prefix:
//
//	<prefix>conv:<conversation>  sorted set, one per conversation
//	    member "#"                         score = coveredAfter
//	    member "<ms>|<msgid>|<row JSON>"   score = msgid
//
// The coverage marker lives in the same key as the messages on purpose: a
// FLUSHALL, an eviction or an expiry removes both together, and the
// conversation then reads as not covered, so sync falls back to the store
// (I3). A marker in a key of its own could survive its data and vouch for
// messages that are gone.
const (
	convKeyPart = "conv:"
	marker      = "#"
)

// RedisConfig configures the Redis cache.
type RedisConfig struct {
	// Prefix starts every key. Default "parley:" (infra/redis's default);
	// pass the same prefix as the rest of the deployment.
	Prefix string
	// Retention is how long a message stays cached. Default Retention, 7
	// days. It is also the TTL of a conversation's key, renewed on every
	// add, so a conversation nobody writes to disappears as a whole.
	Retention time.Duration
	// Now is the clock that decides what is older than the retention.
	// Default time.Now; tests inject their own.
	Now func() time.Time
}

func (c *RedisConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "parley:"
	}
	if c.Retention == 0 {
		c.Retention = Retention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of c at once.
func (c RedisConfig) Validate() error {
	var errs []error
	if c.Retention < time.Millisecond {
		errs = append(errs, fmt.Errorf("redis cache: retention %v must be at least 1ms", c.Retention))
	}
	return errors.Join(errs...)
}

// Redis is the Cache in Redis, shared by every instance of a scaled-out
// deployment. Each operation is one Lua script on one key, so it is atomic
// and works on Redis Cluster too.
type Redis struct {
	client redis.UniversalClient
	cfg    RedisConfig
}

var _ Cache = (*Redis)(nil)

// NewRedis returns the cache over client. The caller owns the client.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Redis{client: client, cfg: cfg}, nil
}

// addScript caches one message.
//
//	KEYS[1]  the conversation's key
//	ARGV[1]  msgid
//	ARGV[2]  floor, already below msgid
//	ARGV[3]  the encoded member
//	ARGV[4]  the message's server time, ms
//	ARGV[5]  cutoff, ms: a message sent before it is older than the retention
//	ARGV[6]  the key's TTL, ms
//
// It returns 1 when the message was added, 2 when it was too old and only
// moved coverage, 0 when it changed nothing. Scores go back to Redis as the
// strings Redis gave (never through Lua's tostring, which keeps only 14
// digits); msgids stay below 2^53, so comparing them as Lua numbers is exact.
var addScript = redis.NewScript(`
local key = KEYS[1]
local id = tonumber(ARGV[1])
local covered = redis.call('ZSCORE', key, '#')
-- fresh: the key holds the marker alone, so the message cannot be there
-- already and nothing older can have aged out.
local fresh = false
if covered then
  covered = tonumber(covered)
else
  -- No marker: whatever the key holds proves nothing. Start afresh.
  redis.call('DEL', key)
  redis.call('ZADD', key, ARGV[2], '#')
  covered = tonumber(ARGV[2])
  fresh = true
end
local res = 0
if id > covered then
  local cutoff = tonumber(ARGV[5])
  if tonumber(ARGV[4]) < cutoff then
    -- Too old to keep: the cache no longer vouches for it or anything before.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
    redis.call('ZADD', key, ARGV[1], '#')
    res = 2
  elseif fresh then
    redis.call('ZADD', key, ARGV[1], ARGV[3])
    res = 1
  elseif #redis.call('ZRANGEBYSCORE', key, ARGV[1], ARGV[1], 'LIMIT', 0, 1) == 0 then
    redis.call('ZADD', key, ARGV[1], ARGV[3])
    res = 1
    -- Trim from the low end what has aged out. The marker is always the
    -- lowest member; every message is above it.
    local last = nil
    local start, size = 1, 1
    while true do
      local batch = redis.call('ZRANGE', key, start, start + size - 1, 'WITHSCORES')
      local young = false
      for i = 1, #batch, 2 do
        local t = tonumber(string.match(batch[i], '^(%-?%d+)|'))
        if t and t < cutoff then
          last = batch[i + 1]
        else
          young = true
          break
        end
      end
      if young or #batch < 2 * size then break end
      start, size = start + size, 64
    end
    if last then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', last)
      redis.call('ZADD', key, last, '#')
    end
  end
end
redis.call('PEXPIRE', key, ARGV[6])
return res
`)

// afterScript reads a page, or nil when the conversation is not covered
// from after on.
//
//	KEYS[1]  the conversation's key
//	ARGV[1]  after
//	ARGV[2]  how many members to return (limit+1, to tell whether more follow)
//
// The marker's score is coveredAfter <= after, so the exclusive range
// (after, +inf] never includes it.
var afterScript = redis.NewScript(`
local covered = redis.call('ZSCORE', KEYS[1], '#')
if not covered or tonumber(ARGV[1]) < tonumber(covered) then
  return false
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
`)

func (c *Redis) key(conv domain.ConversationID) string {
	return c.cfg.Prefix + convKeyPart + conv.String()
}

// addArgs are addScript's arguments for m.
func (c *Redis) addArgs(m domain.Message, floor domain.MsgID) ([]string, []any, error) {
	if m.Conversation.IsZero() {
		return nil, nil, fmt.Errorf("cannot cache message %d: it names no conversation", m.MsgID)
	}
	member, err := encodeMember(m)
	if err != nil {
		return nil, nil, err
	}
	if floor >= m.MsgID {
		floor = m.MsgID - 1
	}
	return []string{c.key(m.Conversation)}, []any{
		int64(m.MsgID), int64(floor), member, m.ServerTime.UnixMilli(),
		cutoffMillis(c.cfg.Now().Add(-c.cfg.Retention)), c.cfg.Retention.Milliseconds(),
	}, nil
}

// cutoffMillis is the first millisecond that is not before cutoff, so that
// "sent before cutoff" reads the same in whole milliseconds as in Memory.
func cutoffMillis(cutoff time.Time) int64 {
	ms := cutoff.UnixMilli()
	if cutoff.After(time.UnixMilli(ms)) {
		ms++
	}
	return ms
}

// Add implements Cache.
func (c *Redis) Add(ctx context.Context, m domain.Message, floor domain.MsgID) error {
	keys, args, err := c.addArgs(m, floor)
	if err != nil {
		return err
	}
	if err := addScript.Run(ctx, c.client, keys, args...).Err(); err != nil {
		return fmt.Errorf("cannot cache message %d of %s: %w", m.MsgID, m.Conversation, err)
	}
	return nil
}

// Addition is one message for AddBatch, with the floor Add would take.
type Addition struct {
	Message domain.Message
	Floor   domain.MsgID
}

// AddBatch is Add for many messages in one round trip (a pipeline of
// EVALSHA), for replays and batching projections. Each message is added
// atomically and idempotently, in the order given; after an error some may
// have been added, and retrying the whole batch is safe.
func (c *Redis) AddBatch(ctx context.Context, batch []Addition) error {
	if len(batch) == 0 {
		return nil
	}
	type call struct {
		keys []string
		args []any
	}
	calls := make([]call, len(batch))
	for i, a := range batch {
		keys, args, err := c.addArgs(a.Message, a.Floor)
		if err != nil {
			return err
		}
		calls[i] = call{keys, args}
	}
	// Every add is idempotent: the batch may be sent again.
	err := parleyredis.EvalShaPipelined(ctx, c.client, addScript, len(calls), func(i int) ([]string, []any) {
		return calls[i].keys, calls[i].args
	})
	if err != nil {
		return fmt.Errorf("cannot cache a batch of %d messages: %w", len(batch), err)
	}
	return nil
}

// After implements Cache.
func (c *Redis) After(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, bool, error) {
	if limit < 0 {
		limit = 0
	}
	members, err := afterScript.Run(ctx, c.client, []string{c.key(conv)}, int64(after), limit+1).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, false, false, fmt.Errorf("cannot read %s after %d from the cache: %w", conv, after, err)
	}
	more := len(members) > limit
	if more {
		members = members[:limit]
	}
	msgs := make([]domain.Message, 0, len(members))
	for _, s := range members {
		if s == marker {
			continue
		}
		m, err := decodeMember(s, conv)
		if err != nil {
			return nil, false, false, err
		}
		msgs = append(msgs, m)
	}
	return msgs, more, true, nil
}

// redisRow is how a message is stored in the cache, after its server time
// and msgid in the member. The conversation is the key. Short names keep
// members small; a field added later must be optional.
type redisRow struct {
	ID          uuid.UUID `json:"i"`
	ClientMsgID string    `json:"c"`
	Account     string    `json:"a"`
	Device      string    `json:"d"`
	Kind        string    `json:"k"`
	Body        string    `json:"b"`
	// Set only once the message changed: when it was last edited (Unix
	// ms), whether it is a tombstone, the revision of its last change.
	EditedAt int64        `json:"e,omitempty"`
	Deleted  bool         `json:"x,omitempty"`
	Revision domain.MsgID `json:"r,omitempty"`
}

// encodeMember is the deterministic member of m:
// "<server time ms>|<msgid>|<row JSON>". The time comes first so that the
// add script can trim without parsing JSON; the same message always makes
// the same member, and the script refuses a second member for a msgid in
// any case.
func encodeMember(m domain.Message) (string, error) {
	r := redisRow{
		ID: m.ID, ClientMsgID: m.ClientMsgID,
		Account: string(m.Sender.Account), Device: string(m.Sender.Device),
		Kind: m.Kind, Body: m.Body, Deleted: m.Deleted, Revision: m.Revision,
	}
	if !m.EditedAt.IsZero() {
		r.EditedAt = m.EditedAt.UnixMilli()
	}
	row, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("cannot encode message %d for the cache: %w", m.MsgID, err)
	}
	b := make([]byte, 0, 42+len(row))
	b = strconv.AppendInt(b, m.ServerTime.UnixMilli(), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(m.MsgID), 10)
	b = append(b, '|')
	b = append(b, row...)
	return string(b), nil
}

// decodeMember maps a member of conv's key back to the message.
func decodeMember(s string, conv domain.ConversationID) (domain.Message, error) {
	bad := func(reason string, err error) (domain.Message, error) {
		if err != nil {
			reason += ": " + err.Error()
		}
		return domain.Message{}, fmt.Errorf("cannot decode a cached message of %s: %s", conv, reason)
	}
	ms, rest, ok := strings.Cut(s, "|")
	if !ok {
		return bad("no server time", nil)
	}
	id, rowJSON, ok := strings.Cut(rest, "|")
	if !ok {
		return bad("no msgid", nil)
	}
	at, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return bad("server time", err)
	}
	msgid, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return bad("msgid", err)
	}
	var row redisRow
	if err := json.Unmarshal([]byte(rowJSON), &row); err != nil {
		return bad("row", err)
	}
	m := domain.Message{
		ID: row.ID, MsgID: domain.MsgID(msgid), ClientMsgID: row.ClientMsgID,
		Sender:       domain.Sender{Account: domain.AccountID(row.Account), Device: domain.DeviceID(row.Device)},
		Conversation: conv, Kind: row.Kind, Body: row.Body, ServerTime: time.UnixMilli(at),
		Deleted: row.Deleted, Revision: row.Revision,
	}
	if row.EditedAt != 0 {
		m.EditedAt = time.UnixMilli(row.EditedAt)
	}
	return m, nil
}

// readScript returns the member of one msgid, if the conversation is
// covered there.
//
//	KEYS[1]  the conversation's key
//	ARGV[1]  msgid
var readScript = redis.NewScript(`
local covered = redis.call('ZSCORE', KEYS[1], '#')
if not covered or tonumber(ARGV[1]) <= tonumber(covered) then
  return false
end
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1)
`)

// replaceScript swaps a message's member for its changed form, if the
// member is still there (an add that trimmed it meanwhile wins).
//
//	KEYS[1]  the conversation's key
//	ARGV[1]  msgid
//	ARGV[2]  the member read
//	ARGV[3]  the changed member
var replaceScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
`)

// forgetScript removes a conversation's members up to a msgid and moves
// its marker there, if the key has a marker below it.
//
//	KEYS[1]  the conversation's key
//	ARGV[1]  through
//
// It returns how many messages it removed. The marker is the lowest
// member, so the range removes it too and the count includes it.
var forgetScript = redis.NewScript(`
local covered = redis.call('ZSCORE', KEYS[1], '#')
if not covered or tonumber(ARGV[1]) <= tonumber(covered) then
  return 0
end
local n = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[1], '#')
return n - 1
`)

// Forget implements Cache.
func (c *Redis) Forget(ctx context.Context, conv domain.ConversationID, through domain.MsgID) (int, error) {
	n, err := forgetScript.Run(ctx, c.client, []string{c.key(conv)}, int64(through)).Int()
	if err != nil {
		return 0, fmt.Errorf("cannot forget %s through %d in the cache: %w", conv, through, err)
	}
	return n, nil
}

// Amend implements Cache: read the message's member, change it, and swap
// it in if it is still the same. Changes are rare; two round trips keep
// the message's encoding in Go, in one place.
func (c *Redis) Amend(ctx context.Context, a domain.Amendment) error {
	key := c.key(a.Conversation)
	members, err := readScript.Run(ctx, c.client, []string{key}, int64(a.MsgID)).StringSlice()
	if errors.Is(err, redis.Nil) || (err == nil && len(members) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read message %d of %s from the cache: %w", a.MsgID, a.Conversation, err)
	}
	m, err := decodeMember(members[0], a.Conversation)
	if err != nil {
		return err
	}
	changed, ok := a.Apply(m)
	if !ok {
		return nil
	}
	member, err := encodeMember(changed)
	if err != nil {
		return err
	}
	if err := replaceScript.Run(ctx, c.client, []string{key}, int64(a.MsgID), members[0], member).Err(); err != nil {
		return fmt.Errorf("cannot change message %d of %s in the cache: %w", a.MsgID, a.Conversation, err)
	}
	return nil
}

// Erase implements Cache: it scans the cache's conversation keys, and
// reads those in accepts whole, swapping each member e covers for its
// tombstone. Erasures are rare; the scan is of the 7-day cache only.
func (c *Redis) Erase(ctx context.Context, e domain.Erasure, in func(domain.ConversationID) bool) error {
	prefix := c.cfg.Prefix + convKeyPart
	iter := c.client.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		conv, err := domain.ParseConversationID(strings.TrimPrefix(key, prefix))
		if err != nil || !in(conv) {
			continue // not a conversation's key, or another partition's
		}
		members, err := c.client.ZRangeWithScores(ctx, key, 0, -1).Result()
		if err != nil {
			return fmt.Errorf("cannot read %s from the cache: %w", conv, err)
		}
		for _, z := range members {
			member, _ := z.Member.(string)
			if member == marker {
				continue
			}
			m, err := decodeMember(member, conv)
			if err != nil {
				return err
			}
			changed, ok := e.Apply(m)
			if !ok {
				continue
			}
			tomb, err := encodeMember(changed)
			if err != nil {
				return err
			}
			if err := replaceScript.Run(ctx, c.client, []string{key}, int64(m.MsgID), member, tomb).Err(); err != nil {
				return fmt.Errorf("cannot erase message %d of %s in the cache: %w", m.MsgID, conv, err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("cannot scan the cache: %w", err)
	}
	return nil
}

// globEscape quotes the characters SCAN's MATCH pattern treats specially,
// so that a prefix is matched literally.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Repair makes the cache stop vouching for what it may have lost of each
// partition in lost from the offset given on (a progress.LossFunc, with
// the journal the projection kept): each conversation the journal says
// those records changed is forgotten through the highest msgid changed
// (Forget), so a sync from below reads the store; the rest of the cache
// stays. When the journal cannot tell for a partition, the whole cache is
// dropped, once (Clear).
func (c *Redis) Repair(ctx context.Context, j *Journal, lost map[int32]int64) error {
	changed := map[domain.ConversationID]domain.MsgID{}
	for partition, from := range lost {
		got, ok := j.Since(partition, from)
		if !ok {
			return c.Clear(ctx)
		}
		for conv, id := range got {
			changed[conv] = max(changed[conv], id)
		}
	}
	type forget struct {
		conv    domain.ConversationID
		through domain.MsgID
	}
	all := make([]forget, 0, len(changed))
	for conv, through := range changed {
		all = append(all, forget{conv, through})
	}
	err := parleyredis.EvalShaPipelined(ctx, c.client, forgetScript, len(all), func(i int) ([]string, []any) {
		return []string{c.key(all[i].conv)}, []any{int64(all[i].through)}
	})
	if err != nil {
		return fmt.Errorf("cannot forget %d conversations the cache may have lost: %w", len(all), err)
	}
	return nil
}

// Clear drops every conversation of the cache: each then reads as not
// covered, and is covered again from its next message on.
func (c *Redis) Clear(ctx context.Context) error {
	iter := c.client.Scan(ctx, 0, globEscape(c.cfg.Prefix+convKeyPart)+"*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.client.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := flush(); err != nil {
				return fmt.Errorf("cannot clear the cache: %w", err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("cannot scan the cache: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("cannot clear the cache: %w", err)
	}
	return nil
}
