package cluster

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/push"
)

// table is a route table in memory that counts its reads.
type table struct {
	mu      sync.Mutex
	online  map[domain.AccountID][]domain.UniqueID
	routes  map[domain.UniqueID]string
	reads   []domain.AccountID
	lookups int
}

func (t *table) Online(_ context.Context, a domain.AccountID) ([]domain.UniqueID, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reads = append(t.reads, a)
	return slices.Clone(t.online[a]), nil
}

func (t *table) Lookup(_ context.Context, uids []domain.UniqueID) (map[domain.UniqueID]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lookups++
	out := map[domain.UniqueID]string{}
	for _, u := range uids {
		if inst, ok := t.routes[u]; ok {
			out[u] = inst
		}
	}
	return out, nil
}

// A push delivered through Resolve reaches the same devices as through
// Deliver, reading nothing more for the accounts Resolve read, and reads
// the accounts it did not.
func TestResolvedPushesReachTheSameDevices(t *testing.T) {
	tb := &table{
		online: map[domain.AccountID][]domain.UniqueID{
			"alice": {"alice/phone", "alice/web"},
			"bob":   {"bob/phone", "bob/gone"}, // bob/gone has no route
			"carol": {"carol/phone"},
		},
		routes: map[domain.UniqueID]string{"alice/phone": "me", "alice/web": "me", "bob/phone": "me", "carol/phone": "me"},
	}
	got := &local{}
	r := NewRouter(tb, "me", got, nil, slog.New(slog.DiscardHandler))
	d, err := r.Resolve(context.Background(), []domain.AccountID{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	readsAfterResolve, lookupsAfterResolve := len(tb.reads), tb.lookups
	msg := domain.Message{Sender: domain.Sender{Account: "alice", Device: "phone"}}
	tests := []struct {
		name       string
		recipients []domain.AccountID
		want       []domain.UniqueID
		reads      int // Online reads the push makes
	}{
		{"resolved accounts", []domain.AccountID{"alice", "bob"}, []domain.UniqueID{"alice/phone", "alice/web", "bob/phone"}, 0},
		{"an account Resolve did not read", []domain.AccountID{"alice", "carol"}, []domain.UniqueID{"alice/phone", "alice/web", "carol/phone"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, via := range []push.Deliverer{d, r} {
				got.mu.Lock()
				got.uids = nil
				got.mu.Unlock()
				before := len(tb.reads)
				if err := via.Deliver(push.Push{Message: msg, Recipients: tc.recipients}); err != nil {
					t.Fatal(err)
				}
				got.mu.Lock()
				uids := slices.Clone(got.uids)
				got.mu.Unlock()
				slices.Sort(uids)
				if !slices.Equal(uids, tc.want) {
					t.Errorf("%T delivered to %v, want %v", via, uids, tc.want)
				}
				if via == d && len(tb.reads)-before != tc.reads {
					t.Errorf("resolved push read %d online sets, want %d", len(tb.reads)-before, tc.reads)
				}
			}
		})
	}
	if readsAfterResolve != 2 || lookupsAfterResolve != 1 {
		t.Errorf("Resolve read %d online sets and looked routes up %d times, want 2 and 1", readsAfterResolve, lookupsAfterResolve)
	}
}
