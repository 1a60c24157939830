package conversations

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// PredecessorsName names Predecessors in a reader's specs.
const PredecessorsName = "parley.projection.predecessors"

// Predecessors tells, for each message a reader passes, the msgid of the
// message before it in its conversation: what a push carries as prevMsgId
// and where the cache's coverage of a conversation starts. It runs first
// in its reader, so it answers once per message for every projection
// after it, from the conversations it saw last (no disk read) or else
// from the index, which is applied later in the same reader and so tells
// the state before the batch.
type Predecessors struct {
	latest func(ctx context.Context, c domain.ConversationID) (domain.MsgID, bool, error)

	mu sync.Mutex
	// seen is the latest msgid of the conversations seen last.
	seen *memo[domain.MsgID]
	// batch is, per partition, the answers for the batch being applied:
	// the message (by conversation and msgid) and the one before it.
	batch map[int32]map[convMsg]answer
}

// answer is a message's predecessor: id, 0 for none, when known.
type answer struct {
	id    domain.MsgID
	known bool
}

type convMsg struct {
	c  domain.ConversationID
	id domain.MsgID
}

// NewPredecessors returns Predecessors that ask latest (the index's
// LatestOf) about conversations they do not remember, and remember up to
// about 2×max of them.
func NewPredecessors(latest func(ctx context.Context, c domain.ConversationID) (domain.MsgID, bool, error), max int) *Predecessors {
	return &Predecessors{latest: latest, seen: newMemo[domain.MsgID](max), batch: map[int32]map[convMsg]answer{}}
}

// ApplyBatch implements projections.Batcher: it works out each message's
// predecessor for the projections that follow in the reader. Applied
// again to the same batch (a retry), it keeps its first answers.
func (p *Predecessors) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	if len(recs) == 0 {
		return nil
	}
	part := recs[0].Position.Partition
	p.mu.Lock()
	answers := p.batch[part]
	switch {
	case answers == nil:
		answers = make(map[convMsg]answer, len(recs))
	case !answersFor(answers, recs):
		// The partition's previous batch is through every projection of
		// the reader: its answers are not asked for again.
		clear(answers)
	}
	p.mu.Unlock()
	// Kept even when a lookup fails, so that a retry keeps what was found.
	defer func() {
		p.mu.Lock()
		p.batch[part] = answers
		p.mu.Unlock()
	}()
	for _, r := range recs {
		m, ok, err := r.Message()
		if err != nil || !ok {
			continue
		}
		k := convMsg{m.Conversation, m.MsgID}
		if _, done := answers[k]; done {
			continue
		}
		prev, any, err := p.remembered(ctx, m.Conversation)
		if err != nil {
			return err
		}
		a := answer{known: true}
		switch {
		case any && prev < m.MsgID:
			a.id = prev
		case any:
			a.known = false // the index is ahead of this record
		}
		p.mu.Lock()
		answers[k] = a
		p.mu.Unlock()
		p.remember(m.Conversation, m.MsgID)
	}
	return nil
}

// answersFor says whether answers were made for this batch (a retry).
func answersFor(answers map[convMsg]answer, recs []projections.Record) bool {
	for _, r := range recs {
		if m, ok, err := r.Message(); err == nil && ok {
			_, done := answers[convMsg{m.Conversation, m.MsgID}]
			return done
		}
	}
	return false
}

// Apply implements projections.Projection: a batch of one.
func (p *Predecessors) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}

// Before is the msgid of the message before r's in conversation c, 0 when
// r's is the first; known is false when that cannot be told (the index
// is ahead of r). r must be in the batch the Predecessors applied last for
// its partition; for any other record it asks the index.
func (p *Predecessors) Before(ctx context.Context, r projections.Record, c domain.ConversationID) (id domain.MsgID, known bool, err error) {
	p.mu.Lock()
	a, found := p.batch[r.Position.Partition][convMsg{c, r.MsgID}]
	p.mu.Unlock()
	if found {
		return a.id, a.known, nil
	}
	id, any, err := p.latest(ctx, c)
	switch {
	case err != nil:
		return 0, false, err
	case !any:
		return 0, true, nil
	case id < r.MsgID:
		return id, true, nil
	}
	return 0, false, nil
}

// remembered is c's latest msgid as far as the reader has passed.
func (p *Predecessors) remembered(ctx context.Context, c domain.ConversationID) (domain.MsgID, bool, error) {
	p.mu.Lock()
	id, ok := p.seen.get(c.String(), "")
	p.mu.Unlock()
	if ok {
		return id, true, nil
	}
	return p.latest(ctx, c)
}

func (p *Predecessors) remember(c domain.ConversationID, id domain.MsgID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen.put(c.String(), "", id)
}
