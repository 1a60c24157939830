package push_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/push"
)

func readRec(conv, account string, msgid int64) projections.Record {
	return projections.Record{Event: events.ConversationRead{Conversation: conv, Account: account, Device: "phone", MsgID: msgid, At: 1000}}
}

// A receipt goes to the reader's account always, and to the others in a
// direct conversation or a group up to domain.MaxReceiptMembers; a cursor
// pushed once is never pushed lower.
func TestProjectionReceipts(t *testing.T) {
	small := []domain.AccountID{"alice", "bob", "carol"}
	var big []domain.AccountID
	for i := range domain.MaxReceiptMembers + 1 {
		big = append(big, domain.AccountID(fmt.Sprint("m", i)))
	}
	limit := big[:domain.MaxReceiptMembers]
	dir := &members{groups: map[domain.GroupID][]domain.AccountID{"small": small, "big": big, "limit": limit}}
	tests := []struct {
		name string
		rec  projections.Record
		want []domain.AccountID // nil: no push
	}{
		{"direct: reader and peer", readRec("d:alice:bob", "bob", 10), []domain.AccountID{"bob", "alice"}},
		{"note to self", readRec("d:alice:alice", "alice", 10), []domain.AccountID{"alice"}},
		{"small group: every member", readRec("g:small", "carol", 10), []domain.AccountID{"carol", "alice", "bob"}},
		{"group at the limit: every member", readRec("g:limit", "m0", 10), limit},
		{"group above the limit: the reader only", readRec("g:big", "m3", 10), []domain.AccountID{"m3"}},
		{"a lower cursor is not pushed", readRec("d:alice:bob", "bob", 9), nil},
		{"the same cursor is not pushed again", readRec("d:alice:bob", "bob", 10), nil},
		{"a higher one is", readRec("d:alice:bob", "bob", 11), []domain.AccountID{"bob", "alice"}},
	}
	out := &recorder{}
	p := push.NewProjection(out, dir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(out.all())
			if err := p.Apply(context.Background(), tt.rec); err != nil {
				t.Fatal(err)
			}
			got := out.all()[before:]
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("pushed %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].Receipt == nil {
				t.Fatalf("pushes %+v, want one receipt", got)
			}
			e := tt.rec.Event.(events.ConversationRead)
			r := got[0].Receipt
			if r.Conversation.String() != e.Conversation || string(r.Reader.Account) != e.Account || int64(r.MsgID) != e.MsgID {
				t.Errorf("receipt %+v, want %+v", r, e)
			}
			if o := got[0].Origin(); string(o.Account) != e.Account || o.Device != "phone" {
				t.Errorf("origin %v, want the reading device", o)
			}
			gotR, wantR := slices.Clone(got[0].Recipients), slices.Clone(tt.want)
			slices.Sort(gotR)
			slices.Sort(wantR)
			if !slices.Equal(gotR, wantR) {
				t.Errorf("recipients %v, want %v", got[0].Recipients, tt.want)
			}
		})
	}
}
