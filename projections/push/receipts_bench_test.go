package push_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/ws"
)

// devices is a Deliverer that does what a gateway does per push — encode
// the frame once, hand it to every online device of every recipient but
// the origin — with each device's queue being a byte count.
type devices struct {
	perAccount int
	frames     int64
	bytes      int64
}

func (d *devices) Deliver(p push.Push) error {
	frame := ws.PushFrame(p)
	for range p.Recipients {
		for range d.perAccount {
			d.frames++
			d.bytes += int64(len(frame))
		}
	}
	d.frames-- // the reading device gets none
	return nil
}

// BenchmarkReceipts500: a group of 500 members, every member online with
// one device, each read (a ConversationRead with a higher msgid) fanned out
// with receipts on for the whole group, and with the group above the
// receipt limit (only the reader's own devices). pushes/read × 100 reads/s
// is the push rate of 100 reads/s; ns/op × 100 its CPU per second.
func BenchmarkReceipts500(b *testing.B) {
	members := make([]domain.AccountID, domain.MaxGroupMembers)
	for i := range members {
		members[i] = domain.AccountID(fmt.Sprint("member", i))
	}
	dir := &members500{list: members}
	for _, tc := range []struct {
		name  string
		limit int
	}{{"receipts on", domain.MaxGroupMembers}, {"above the limit", domain.MaxReceiptMembers}} {
		b.Run(tc.name, func(b *testing.B) {
			out := &devices{perAccount: 1}
			p := push.NewProjection(out, dir).WithReceiptMembers(tc.limit)
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rec := projections.Record{Event: events.ConversationRead{Conversation: "g:big", Account: string(members[i%len(members)]),
					Device: "phone", MsgID: int64(1<<48 + i), At: 1000}}
				if err := p.Apply(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.frames)/float64(b.N), "pushes/read")
			b.ReportMetric(float64(out.bytes)/float64(b.N), "pushbytes/read")
		})
	}
}

// members500 is a fixed member list that costs nothing to resolve, so the
// benchmark measures the fan-out.
type members500 struct{ list []domain.AccountID }

func (m *members500) MembersAt(context.Context, domain.GroupID, projections.Record) ([]domain.AccountID, error) {
	return m.list, nil
}
func (m *members500) Changed(domain.GroupID) {}
