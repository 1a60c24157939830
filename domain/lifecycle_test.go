package domain

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAmendmentCheck(t *testing.T) {
	sent := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	alice, bob := Sender{"alice", "phone"}, Sender{"bob", "phone"}
	conv := DirectConversation("alice", "bob")
	m := Message{MsgID: 10, Sender: alice, Conversation: conv, Body: "hi", ServerTime: sent}
	tomb := m
	tomb.Deleted, tomb.Body = true, ""
	edit := func(by Sender) Amendment {
		a, err := NewEdit(by, conv, 10, "e1", "new")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	del := func(by Sender) Amendment {
		a, err := NewDelete(by, conv, 10)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name string
		a    Amendment
		m    Message
		now  time.Time
		want error
	}{
		{"the sender edits within the window", edit(alice), m, sent.Add(48 * time.Hour), nil},
		{"the sender edits past the window", edit(alice), m, sent.Add(48*time.Hour + time.Millisecond), ErrTooLate},
		{"another account edits", edit(bob), m, sent, ErrForbidden},
		{"an edit of a tombstone", edit(alice), tomb, sent, ErrNotFound},
		{"the sender deletes past the window", del(alice), m, sent.Add(1000 * time.Hour), nil},
		{"another account deletes", del(bob), m, sent, ErrForbidden},
		{"a second deletion is allowed (and answered as a duplicate)", del(alice), tomb, sent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.a.Check(tt.m, tt.now, DefaultEditWindow); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Check = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewEditAndDeleteValidate(t *testing.T) {
	alice := Sender{"alice", "phone"}
	conv := GroupConversation("g1")
	tests := []struct {
		name     string
		err      error
		tooLarge bool
	}{
		{"no conversation", func() error { _, err := NewEdit(alice, ConversationID{}, 1, "e", "x"); return err }(), false},
		{"zero msgid", func() error { _, err := NewDelete(alice, conv, 0); return err }(), false},
		{"no client message id", func() error { _, err := NewEdit(alice, conv, 1, "", "x"); return err }(), false},
		{"bad device", func() error { _, err := NewDelete(Sender{"alice", "a/b"}, conv, 1); return err }(), false},
		{"not UTF-8", func() error { _, err := NewEdit(alice, conv, 1, "e", "\xff"); return err }(), false},
		{"body too large", func() error { _, err := NewEdit(alice, conv, 1, "e", strings.Repeat("x", MaxBodyBytes+1)); return err }(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var invalid *InvalidError
			switch {
			case tt.tooLarge && !errors.Is(tt.err, ErrTooLarge):
				t.Errorf("err = %v, want too large", tt.err)
			case !tt.tooLarge && !errors.As(tt.err, &invalid):
				t.Errorf("err = %v, want invalid", tt.err)
			}
		})
	}
}

func TestAmendmentApply(t *testing.T) {
	m := Message{MsgID: 10, Body: "hi"}
	at := time.UnixMilli(5000)
	e1 := Amendment{MsgID: 10, Body: "one", At: at, Revision: 12}
	e2 := Amendment{MsgID: 10, Body: "two", At: at.Add(time.Second), Revision: 14}
	d := Amendment{MsgID: 10, Delete: true, At: at, Revision: 16}
	got, ok := e1.Apply(m)
	if !ok || got.Body != "one" || !got.EditedAt.Equal(at) || got.Revision != 12 {
		t.Fatalf("first edit: %+v %v", got, ok)
	}
	got, _ = e2.Apply(got)
	if again, ok := e1.Apply(got); ok || again.Body != "two" {
		t.Errorf("an older edit applied after a newer: %+v %v", again, ok)
	}
	got, ok = d.Apply(got)
	if !ok || !got.Deleted || got.Body != "" || !got.EditedAt.IsZero() || got.Revision != 16 {
		t.Errorf("deletion: %+v %v", got, ok)
	}
	if _, ok := (Amendment{MsgID: 10, Body: "back", Revision: 18}).Apply(got); ok {
		t.Error("an edit applied to a tombstone")
	}
}
