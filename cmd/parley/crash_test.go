package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// A single node killed (SIGKILL) right after a burst of sends keeps every
// acknowledged message once, and counts each once: a start after a crash
// applies the messages after its read models' stored progress again (it
// lags by up to a second), which must change nothing.
func TestKilledNodeKeepsAndCountsEveryAckedMessageOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tokens, err := auth.NewTokens(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	accounts := []string{"ann", "bob", "cat", "dan"}
	dialAll := func(url string) map[string]*client.Client {
		out := map[string]*client.Client{}
		for _, a := range accounts {
			tok, err := tokens.Mint(domain.AccountID(a), "phone", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.Dial(ctx, client.Config{URL: url, Token: tok, RequestTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			out[a] = c
		}
		return out
	}
	// state is what the accounts can read: every conversation's msgids,
	// from the history, and every account's conversation list.
	state := func(cs map[string]*client.Client) string {
		var out []string
		for _, a := range accounts {
			list, err := cs[a].Conversations(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range list {
				out = append(out, fmt.Sprintf("%s lists %s: latest %d, unread %d", a, l.Conversation, l.LatestMsgID, l.Unread))
				var ids []int64
				for cur := (wire.Cursor{}); ; {
					page, err := cs[a].Sync(ctx, l.Conversation, cur, 100)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range page.Messages {
						ids = append(ids, m.MsgID)
						cur = wire.Cursor{LastTime: m.ServerTime, LastMsgID: m.MsgID}
					}
					if !page.HasMore || len(page.Messages) == 0 {
						break
					}
				}
				out = append(out, fmt.Sprintf("%s reads %s: %v", a, l.Conversation, ids))
			}
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}

	cmd, url := serveProcess(t, dir)
	cs := dialAll(url)
	acked := map[string][]int64{}
	for i := range 120 {
		from, to := accounts[i%4], accounts[(i/4+i+1)%4]
		if from == to {
			to = accounts[(i+2)%4]
		}
		ack, err := cs[from].Send(ctx, client.Target{Account: to}, fmt.Sprintf("c-%d", i), "text", fmt.Sprint("message ", i))
		if err != nil {
			t.Fatal(err)
		}
		acked[ack.Conversation] = append(acked[ack.Conversation], ack.MsgID)
	}
	before := state(cs) // a read waits for the read models to hold every acked message
	for conv, ids := range acked {
		if !strings.Contains(before, fmt.Sprintf("reads %s: %v", conv, ids)) {
			t.Fatalf("before the crash, %s does not read %v:\n%s", conv, ids, before)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	_, url = serveProcess(t, dir)
	if after := state(dialAll(url)); after != before {
		t.Fatalf("after the crash the accounts read\n%s\n\nbefore it\n%s", after, before)
	}
}
