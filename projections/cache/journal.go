package cache

import (
	"strings"
	"sync"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Journal remembers, per partition, which conversations the projection
// changed at which offsets lately, so that a cache that lost writes (a
// Redis failover: the replica promoted had not received the master's last
// writes) can stop vouching for exactly what it may have lost — the
// conversations changed from the offset its progress went back to — and
// keep the rest (Redis.Repair). It is bounded in bytes: past its budget
// the partition that holds the most forgets its oldest half, and a loss
// reaching below what a partition remembers costs the whole cache.
type Journal struct {
	mu     sync.Mutex
	parts  map[int32]*journalPart
	bytes  int
	budget int
}

type journalPart struct {
	// Every record of offset >= from that this process applied, up to
	// next, is here if it changed a conversation.
	from, next int64
	changes    []change
	bytes      int
}

// change is one record that changed a conversation: its message's msgid
// (an amendment's target), or erase for an erasure, which may change any
// conversation.
type change struct {
	offset int64
	conv   string // cloned: the record's buffers are not kept alive
	msgID  domain.MsgID
	erase  bool
}

// changeOverhead approximates a change's bytes besides its conversation.
const changeOverhead = 48

// DefaultJournalBytes is NewJournal's budget: about 40,000 changes, the
// last few seconds of a busy projector.
const DefaultJournalBytes = 4 << 20

// NewJournal returns a journal of at most budget bytes (0:
// DefaultJournalBytes).
func NewJournal(budget int) *Journal {
	if budget <= 0 {
		budget = DefaultJournalBytes
	}
	return &Journal{parts: map[int32]*journalPart{}, budget: budget}
}

// record notes what recs, one batch of a partition in log order, change.
// A batch that does not follow the last one noted (the partition was
// elsewhere meanwhile, or records were skipped) starts the partition
// afresh: the journal cannot tell what the records between changed.
func (j *Journal) record(recs []projections.Record) {
	if len(recs) == 0 {
		return
	}
	part := recs[0].Position.Partition
	first, last := recs[0].Position.Offset, recs[len(recs)-1].Position.Offset
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.parts[part]
	if p == nil || first > p.next || first < p.from {
		if p != nil {
			j.drop(p, len(p.changes))
		}
		p = &journalPart{from: first, next: first}
		j.parts[part] = p
	}
	for _, r := range recs {
		if r.Position.Offset < p.next {
			continue // applied again after a retry: noted already
		}
		// The events' own fields, not the domain values the projection
		// makes of them: a batch is decoded once. A record that does
		// not validate is skipped by the projection, and by Since.
		var c change
		switch e := r.Event.(type) {
		case events.AccountErased:
			c = change{erase: true}
		case events.MessageSent:
			c = change{conv: strings.Clone(e.Conversation), msgID: r.MsgID}
		case events.MessageEdited:
			c = change{conv: strings.Clone(e.Conversation), msgID: domain.MsgID(e.MsgID)}
		case events.MessageDeleted:
			c = change{conv: strings.Clone(e.Conversation), msgID: domain.MsgID(e.MsgID)}
		default:
			continue
		}
		c.offset = r.Position.Offset
		p.changes = append(p.changes, c)
		p.bytes += len(c.conv) + changeOverhead
		j.bytes += len(c.conv) + changeOverhead
	}
	p.next = max(p.next, last+1)
	for j.bytes > j.budget {
		var largest *journalPart
		for _, q := range j.parts {
			if largest == nil || q.bytes > largest.bytes {
				largest = q
			}
		}
		j.drop(largest, (len(largest.changes)+1)/2)
	}
}

// drop forgets p's n oldest changes; p then remembers from the offset
// after the last one dropped.
func (j *Journal) drop(p *journalPart, n int) {
	if n == 0 {
		return
	}
	for _, c := range p.changes[:n] {
		p.bytes -= len(c.conv) + changeOverhead
		j.bytes -= len(c.conv) + changeOverhead
	}
	p.from = p.changes[n-1].offset + 1
	p.changes = append(p.changes[:0:0], p.changes[n:]...)
}

// Since returns, for every conversation changed by a record of partition
// at offset from or later, the highest msgid changed — if the journal
// knows every such record. ok is false when it does not (the loss reaches
// below what it remembers, or includes an erasure, which may change any
// conversation): the whole cache is then in doubt.
func (j *Journal) Since(partition int32, from int64) (changed map[domain.ConversationID]domain.MsgID, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.parts[partition]
	if p == nil {
		return nil, false
	}
	if from >= p.next {
		return nil, true // nothing applied here from there on
	}
	if from < p.from {
		return nil, false
	}
	changed = map[domain.ConversationID]domain.MsgID{}
	for _, c := range p.changes {
		if c.offset < from {
			continue
		}
		if c.erase {
			return nil, false
		}
		conv, err := domain.ParseConversationID(c.conv)
		if err != nil {
			continue // poison: the projection applied nothing of it
		}
		changed[conv] = max(changed[conv], c.msgID)
	}
	return changed, true
}
