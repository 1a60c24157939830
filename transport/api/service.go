// Package api holds the operations every transport offers — send, sync, the
// conversation list and group administration — independent of WebSocket or
// HTTP. It validates and authorizes with the domain, appends events to the
// log, and reads the read models only once they hold everything that was
// acknowledged before the request (I3).
package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/store"
)

// ErrUnavailable: the log or a read model cannot serve the request now.
// Nothing was accepted; the client may retry.
var ErrUnavailable = errors.New("unavailable")

// Log is the event log as the service needs it.
type Log interface {
	Append(ctx context.Context, id string, e events.Event) (events.Position, error)
	EndOffset(partition int32) (int64, error)
	EndOffsets() (map[int32]int64, error)
	Partitions() int32
	Epoch() uint8
}

// Progress tells how far a read model has applied the log.
type Progress = projections.Tracker

// Groups is the membership read model.
type Groups interface {
	Group(g domain.GroupID) (*domain.Group, bool)
	IsMember(g domain.GroupID, a domain.AccountID) (exists, member bool)
	GroupsOf(a domain.AccountID) []*domain.Group
}

// Conversations is the conversation list read model.
type Conversations interface {
	List(account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) []conversations.Latest
}

// ReadModels are the read models with their progress.
type ReadModels struct {
	Store                 store.Store
	StoreProgress         Progress
	Cache                 cache.Cache
	CacheProgress         Progress
	Groups                Groups
	GroupsProgress        Progress
	Conversations         Conversations
	ConversationsProgress Progress
}

// Config tunes the service.
type Config struct {
	// ReadTimeout bounds how long a read waits for a lagging read model
	// before it answers unavailable. Default 5s.
	ReadTimeout time.Duration
	// CacheWait bounds how long a sync waits for the cache to catch up with
	// the log before it reads the store instead. Default 200ms.
	CacheWait time.Duration
	// CacheWindow is how recent lastTime must be for sync to try the cache
	// (R6). Default cache.Retention, 7 days.
	CacheWindow time.Duration
	// DefaultLimit and MaxLimit bound a sync page. Defaults 50 and 200.
	DefaultLimit, MaxLimit int
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Observer receives what metrics need; nil observes nothing.
	Observer Observer
}

// Observer is told the outcome of sends and syncs.
type Observer interface {
	// SendDone: result is "accepted", "duplicate" or the refusing code.
	SendDone(result string, d time.Duration)
	// SyncDone: source is "cache", "store" or the refusing code.
	SyncDone(source string)
}

type noObserver struct{}

func (noObserver) SendDone(string, time.Duration) {}
func (noObserver) SyncDone(string)                {}

func (c *Config) setDefaults() {
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 5 * time.Second
	}
	if c.CacheWait == 0 {
		c.CacheWait = 200 * time.Millisecond
	}
	if c.CacheWindow == 0 {
		c.CacheWindow = cache.Retention
	}
	if c.DefaultLimit == 0 {
		c.DefaultLimit = 50
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = 200
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
}

// Service implements the operations.
type Service struct {
	cfg  Config
	log  Log
	rm   ReadModels
	idem idempotency
}

// New returns a service over log and the read models.
func New(cfg Config, log Log, rm ReadModels) *Service {
	cfg.setDefaults()
	return &Service{cfg: cfg, log: log, rm: rm, idem: idempotency{inflight: map[idemKey]*call{}, recent: map[idemKey]recent{}}}
}

// Target is whom a message goes to: exactly one of Account and Group.
type Target struct {
	Account string
	Group   string
}

// Ack is the answer to an accepted send.
type Ack struct {
	MsgID        domain.MsgID
	MessageID    uuid.UUID
	Conversation domain.ConversationID
	ServerTime   time.Time
	// Duplicate is true when the client message id was seen before and this
	// is the original ack.
	Duplicate bool
}

// SendRequest is a message a client asks to send.
type SendRequest struct {
	From        domain.Sender
	To          Target
	ClientMsgID string
	Kind        string
	Body        string
	// Retry marks a repeat of an attempt whose ack was lost: the lookup of
	// the client message id then waits until the store holds everything
	// already in the log, so a record that landed despite the lost ack is
	// found and not appended again.
	Retry bool
}

// Send accepts a message: validate, authorize, append MessageSent keyed by
// the conversation, and answer with the msgid the log assigned. A retry with
// the same client message id returns the original ack and appends nothing (I4).
func (s *Service) Send(ctx context.Context, r SendRequest) (ack Ack, err error) {
	started := time.Now()
	defer func() {
		result := "accepted"
		switch {
		case err != nil:
			result = string(Code(err))
		case ack.Duplicate:
			result = "duplicate"
		}
		s.cfg.Observer.SendDone(result, time.Since(started))
	}()
	conv, err := s.resolve(r.From.Account, r.To)
	if err != nil {
		return Ack{}, err
	}
	d, err := domain.NewDraft(r.From, conv, r.ClientMsgID, r.Kind, r.Body)
	if err != nil {
		return Ack{}, err
	}
	if conv.Kind() == domain.KindGroup {
		if err := s.authorizeGroup(ctx, conv, r.From.Account); err != nil {
			return Ack{}, err
		}
	}
	key := idemKey{r.From.Account, r.ClientMsgID}
	return s.idem.do(key, func() (Ack, bool, error) {
		if r.Retry {
			if err := s.catchUp(ctx, s.rm.StoreProgress, conv); err != nil {
				return Ack{}, false, err
			}
		}
		if m, ok, err := s.rm.Store.ByClientMsgID(ctx, r.From.Account, r.ClientMsgID); err != nil {
			return Ack{}, false, fmt.Errorf("cannot check client message id: %w: %v", ErrUnavailable, err)
		} else if ok {
			return Ack{MsgID: m.MsgID, MessageID: m.ID, Conversation: m.Conversation, ServerTime: m.ServerTime}, true, nil
		}
		return Ack{}, false, nil
	}, func() (Ack, events.Position, error) {
		id, err := uuid.NewV7()
		if err != nil {
			return Ack{}, events.Position{}, err
		}
		now := s.cfg.Now()
		pos, err := s.log.Append(ctx, id.String(), events.NewMessageSent(id.String(), d, now))
		if err != nil {
			return Ack{}, events.Position{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		msgid, err := events.MsgID(s.log.Epoch(), pos.Offset)
		if err != nil {
			return Ack{}, events.Position{}, err
		}
		return Ack{MsgID: msgid, MessageID: id, Conversation: conv, ServerTime: time.UnixMilli(now.UnixMilli())}, pos, nil
	})
}

// catchUp waits until t has applied everything in conv's partition that is
// in the log now.
func (s *Service) catchUp(ctx context.Context, t Progress, conv domain.ConversationID) error {
	part := events.PartitionFor(conv.String(), s.log.Partitions())
	end, err := s.log.EndOffset(part)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := t.WaitFor(ctx, part, end); err != nil {
		return fmt.Errorf("read model is behind the log: %w: %v", ErrUnavailable, err)
	}
	return nil
}

func (s *Service) resolve(me domain.AccountID, to Target) (domain.ConversationID, error) {
	switch {
	case to.Account != "" && to.Group != "":
		return domain.ConversationID{}, &domain.InvalidError{Field: "to", Reason: "names both an account and a group"}
	case to.Account != "":
		peer, err := domain.ParseAccountID(to.Account)
		if err != nil {
			return domain.ConversationID{}, err
		}
		return domain.DirectConversation(me, peer), nil
	case to.Group != "":
		g, err := domain.ParseGroupID(to.Group)
		if err != nil {
			return domain.ConversationID{}, err
		}
		return domain.GroupConversation(g), nil
	}
	return domain.ConversationID{}, &domain.InvalidError{Field: "to", Reason: "names no account or group"}
}

// SyncResult is one page of a conversation after a cursor.
type SyncResult struct {
	Messages []domain.Message
	// Source is "cache" or "store": which read model answered.
	Source string
	// More is true when messages after the page remain.
	More bool
	// NextTime and NextMsgID are the cursor to continue from.
	NextTime  time.Time
	NextMsgID domain.MsgID
}

// Sources of a sync.
const (
	SourceCache = "cache"
	SourceStore = "store"
)

// Sync returns messages of conversation after lastMsgID (R6). When lastTime
// is within the cache window and the cache holds the whole range, the cache
// answers; otherwise the store does — never both in one read. Either is read
// only after it has applied every record acknowledged before the call.
func (s *Service) Sync(ctx context.Context, who domain.AccountID, conversation string, lastTime time.Time, lastMsgID domain.MsgID, limit int) (res SyncResult, err error) {
	defer func() {
		if err != nil {
			s.cfg.Observer.SyncDone(string(Code(err)))
		} else {
			s.cfg.Observer.SyncDone(res.Source)
		}
	}()
	return s.sync(ctx, who, conversation, lastTime, lastMsgID, limit)
}

func (s *Service) sync(ctx context.Context, who domain.AccountID, conversation string, lastTime time.Time, lastMsgID domain.MsgID, limit int) (SyncResult, error) {
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return SyncResult{}, err
	}
	if err := s.authorizeRead(who, conv); err != nil {
		return SyncResult{}, err
	}
	if lastMsgID < 0 {
		return SyncResult{}, &domain.InvalidError{Field: "lastMsgId", Reason: "is negative"}
	}
	switch {
	case limit < 0:
		return SyncResult{}, &domain.InvalidError{Field: "limit", Reason: "is negative"}
	case limit == 0:
		limit = s.cfg.DefaultLimit
	case limit > s.cfg.MaxLimit:
		limit = s.cfg.MaxLimit
	}
	part := events.PartitionFor(conv.String(), s.log.Partitions())
	end, err := s.log.EndOffset(part)
	if err != nil {
		return SyncResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	now := s.cfg.Now()
	res := SyncResult{NextTime: now, NextMsgID: lastMsgID}
	if !lastTime.IsZero() && now.Sub(lastTime) < s.cfg.CacheWindow {
		// A cache that cannot show it has applied everything acknowledged
		// before this call (lagging, or flushed and not yet refilled) must
		// not answer: the store does (I3).
		if msgs, more, ok := s.fromCache(ctx, conv, part, end, lastMsgID, limit); ok {
			res.Messages, res.More, res.Source = msgs, more, SourceCache
			return res.withCursor(), nil
		}
	}
	if err := s.rm.StoreProgress.WaitFor(ctx, part, end); err != nil {
		return SyncResult{}, fmt.Errorf("store is behind the log: %w: %v", ErrUnavailable, err)
	}
	msgs, more, err := s.rm.Store.After(ctx, conv, lastMsgID, limit)
	if err != nil {
		return SyncResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	res.Messages, res.More, res.Source = msgs, more, SourceStore
	return res.withCursor(), nil
}

// fromCache reads the cache if it has caught up with end and covers the range.
func (s *Service) fromCache(ctx context.Context, conv domain.ConversationID, part int32, end int64, after domain.MsgID, limit int) ([]domain.Message, bool, bool) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.CacheWait)
	defer cancel()
	if err := s.rm.CacheProgress.WaitFor(wctx, part, end); err != nil {
		return nil, false, false
	}
	msgs, more, covered, err := s.rm.Cache.After(ctx, conv, after, limit)
	if err != nil || !covered {
		return nil, false, false
	}
	return msgs, more, true
}

func (r SyncResult) withCursor() SyncResult {
	if n := len(r.Messages); n > 0 {
		r.NextMsgID = r.Messages[n-1].MsgID
	}
	return r
}

func (s *Service) authorizeRead(who domain.AccountID, conv domain.ConversationID) error {
	if conv.Kind() == domain.KindDirect {
		if !conv.HasParticipant(who) {
			return fmt.Errorf("%s is not in %s: %w", who, conv, domain.ErrForbidden)
		}
		return nil
	}
	return s.authorizeGroup(context.Background(), conv, who)
}

// authorizeGroup checks that who is a member of conv's group. A refusal is
// checked again after the groups model has caught up with the log: another
// instance may have created the group or added who a moment ago.
func (s *Service) authorizeGroup(ctx context.Context, conv domain.ConversationID, who domain.AccountID) error {
	exists, member := s.rm.Groups.IsMember(conv.Group(), who)
	if !exists || !member {
		if err := s.catchUp(ctx, s.rm.GroupsProgress, conv); err != nil {
			return err
		}
		exists, member = s.rm.Groups.IsMember(conv.Group(), who)
	}
	if !exists {
		return fmt.Errorf("group %s: %w", conv.Group(), domain.ErrNotFound)
	}
	if !member {
		return fmt.Errorf("%s is not in group %s: %w", who, conv.Group(), domain.ErrNotMember)
	}
	return nil
}

// MaxConversations bounds one conversation list.
const MaxConversations = 1000

// Conversations lists who's conversations that changed after since, newest
// first, once the list has applied everything acknowledged before the call.
func (s *Service) Conversations(ctx context.Context, who domain.AccountID, since time.Time, limit int) ([]conversations.Latest, error) {
	if limit <= 0 || limit > MaxConversations {
		limit = MaxConversations
	}
	ends, err := s.log.EndOffsets()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.rm.GroupsProgress.WaitForAll(ctx, ends); err != nil {
		return nil, fmt.Errorf("groups are behind the log: %w: %v", ErrUnavailable, err)
	}
	if err := s.rm.ConversationsProgress.WaitForAll(ctx, ends); err != nil {
		return nil, fmt.Errorf("conversation list is behind the log: %w: %v", ErrUnavailable, err)
	}
	var gs []domain.GroupID
	for _, g := range s.rm.Groups.GroupsOf(who) {
		gs = append(gs, g.ID())
	}
	return s.rm.Conversations.List(who, gs, since, limit), nil
}

// CreateGroup creates a group owned by who with the given members.
func (s *Service) CreateGroup(ctx context.Context, who domain.AccountID, name string, members []string) (*domain.Group, error) {
	accounts, err := parseAccounts(members)
	if err != nil {
		return nil, err
	}
	id := domain.GroupID("g" + strings.ReplaceAll(uuid.NewString(), "-", ""))
	g, err := domain.NewGroup(id, name, who, accounts)
	if err != nil {
		return nil, err
	}
	e := events.GroupCreated{Group: string(id), Name: name, Owner: string(who), Members: accountStrings(g.Members()), At: s.cfg.Now().UnixMilli()}
	return s.appendGroupEvent(ctx, id, e)
}

// AddMembers adds accounts to group g on behalf of who.
func (s *Service) AddMembers(ctx context.Context, who domain.AccountID, group string, accounts []string) (*domain.Group, error) {
	g, as, err := s.groupChange(who, group, accounts)
	if err != nil {
		return nil, err
	}
	if err := g.CanAdd(who, as); err != nil {
		return nil, err
	}
	e := events.GroupMembersAdded{Group: string(g.ID()), By: string(who), Accounts: accountStrings(as), At: s.cfg.Now().UnixMilli()}
	after, err := s.appendGroupEvent(ctx, g.ID(), e)
	if err != nil {
		return nil, err
	}
	// A concurrent add may have filled the group first: then the log
	// applied this one as nothing.
	for _, a := range as {
		if !after.IsMember(a) {
			return nil, &domain.LimitError{Field: "group members", Limit: domain.MaxGroupMembers, Got: after.Size() + len(as)}
		}
	}
	return after, nil
}

// RemoveMembers removes accounts from group g on behalf of who.
func (s *Service) RemoveMembers(ctx context.Context, who domain.AccountID, group string, accounts []string) (*domain.Group, error) {
	g, as, err := s.groupChange(who, group, accounts)
	if err != nil {
		return nil, err
	}
	if err := g.CanRemove(who, as); err != nil {
		return nil, err
	}
	e := events.GroupMembersRemoved{Group: string(g.ID()), By: string(who), Accounts: accountStrings(as), At: s.cfg.Now().UnixMilli()}
	return s.appendGroupEvent(ctx, g.ID(), e)
}

func (s *Service) groupChange(who domain.AccountID, group string, accounts []string) (*domain.Group, []domain.AccountID, error) {
	id, err := domain.ParseGroupID(group)
	if err != nil {
		return nil, nil, err
	}
	if len(accounts) == 0 {
		return nil, nil, &domain.InvalidError{Field: "accounts", Reason: "is empty"}
	}
	as, err := parseAccounts(accounts)
	if err != nil {
		return nil, nil, err
	}
	g, ok := s.rm.Groups.Group(id)
	if !ok {
		// Another instance may have created it a moment ago.
		if err := s.catchUp(context.Background(), s.rm.GroupsProgress, domain.GroupConversation(id)); err != nil {
			return nil, nil, err
		}
		if g, ok = s.rm.Groups.Group(id); !ok {
			return nil, nil, fmt.Errorf("group %s: %w", id, domain.ErrNotFound)
		}
	}
	return g, as, nil
}

// appendGroupEvent appends e and waits until the groups model applied it, so
// that the caller's next request already sees the change.
func (s *Service) appendGroupEvent(ctx context.Context, id domain.GroupID, e events.Event) (*domain.Group, error) {
	pos, err := s.log.Append(ctx, uuid.NewString(), e)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.rm.GroupsProgress.WaitFor(ctx, pos.Partition, pos.Offset+1); err != nil {
		return nil, fmt.Errorf("group change is in the log but not applied yet: %w: %v", ErrUnavailable, err)
	}
	g, ok := s.rm.Groups.Group(id)
	if !ok {
		return nil, fmt.Errorf("group %s vanished: %w", id, ErrUnavailable)
	}
	return g, nil
}

// Groups lists the groups who belongs to, once the groups model has
// applied everything acknowledged before the call.
func (s *Service) Groups(ctx context.Context, who domain.AccountID) ([]*domain.Group, error) {
	ends, err := s.log.EndOffsets()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.rm.GroupsProgress.WaitForAll(ctx, ends); err != nil {
		return nil, fmt.Errorf("groups are behind the log: %w: %v", ErrUnavailable, err)
	}
	return s.rm.Groups.GroupsOf(who), nil
}

func parseAccounts(in []string) ([]domain.AccountID, error) {
	if len(in) > domain.MaxGroupMembers {
		return nil, &domain.LimitError{Field: "accounts in one request", Limit: domain.MaxGroupMembers, Got: len(in)}
	}
	return events.Accounts(in)
}

func accountStrings(in []domain.AccountID) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = string(a)
	}
	return out
}

// idempotency makes sends with one client message id produce one message:
// concurrent retries wait for the first, later ones find its ack in recent
// (until the store holds the message) or in the store.
type idempotency struct {
	mu       sync.Mutex
	inflight map[idemKey]*call
	recent   map[idemKey]recent
}

type idemKey struct {
	account domain.AccountID
	id      string
}

type call struct {
	done chan struct{}
	ack  Ack
	err  error
}

type recent struct {
	ack Ack
	pos events.Position
	at  time.Time
}

func (i *idempotency) do(k idemKey, lookup func() (Ack, bool, error), send func() (Ack, events.Position, error)) (Ack, error) {
	for {
		i.mu.Lock()
		if c, ok := i.inflight[k]; ok {
			i.mu.Unlock()
			<-c.done
			if c.err == nil {
				ack := c.ack
				ack.Duplicate = true
				return ack, nil
			}
			continue // the first attempt failed; this one tries again
		}
		if r, ok := i.recent[k]; ok {
			i.mu.Unlock()
			ack := r.ack
			ack.Duplicate = true
			return ack, nil
		}
		c := &call{done: make(chan struct{})}
		i.inflight[k] = c
		i.mu.Unlock()

		ack, found, err := lookup()
		var pos events.Position
		if err == nil && !found {
			ack, pos, err = send()
		}
		ack.Duplicate = found
		c.ack, c.err = ack, err
		i.mu.Lock()
		delete(i.inflight, k)
		if err == nil && !found {
			i.recent[k] = recent{ack: ack, pos: pos, at: time.Now()}
		}
		i.mu.Unlock()
		close(c.done)
		return ack, err
	}
}

// Run does the service's housekeeping until ctx ends: every 30 s it
// forgets recent acks that the store holds.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.SweepIdempotency(time.Minute)
		}
	}
}

// SweepIdempotency forgets recent acks that the store holds and that are
// older than minAge.
func (s *Service) SweepIdempotency(minAge time.Duration) {
	cutoff := time.Now().Add(-minAge)
	s.idem.mu.Lock()
	defer s.idem.mu.Unlock()
	for k, r := range s.idem.recent {
		if r.at.Before(cutoff) && s.rm.StoreProgress.Next(r.pos.Partition) > r.pos.Offset {
			delete(s.idem.recent, k)
		}
	}
}
