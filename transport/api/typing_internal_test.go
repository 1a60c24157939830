package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Full, the throttle forgets the keys whose interval has passed, not the
// ones still within it: an account that just typed is still held back.
func TestTypingThrottleFullKeepsTheRecent(t *testing.T) {
	var th typingThrottle
	now := time.Now()
	key := func(i int) typingKey {
		return typingKey{a: domain.AccountID(fmt.Sprint("a", i)), c: domain.DirectConversation("a0", "b")}
	}
	for i := 1; i < maxTypingKeys; i++ {
		if ok, _ := th.allow(key(i), now.Add(-2*TypingInterval)); !ok {
			t.Fatalf("key %d refused", i)
		}
	}
	if ok, _ := th.allow(key(0), now); !ok {
		t.Fatal("the recent key refused at first")
	}
	if ok, _ := th.allow(key(maxTypingKeys), now); !ok { // the throttle is full: it makes room
		t.Fatal("a new key refused")
	}
	if ok, wait := th.allow(key(0), now.Add(TypingInterval/2)); ok || wait <= 0 {
		t.Errorf("the recent key passed again within its interval (wait %v): the throttle forgot it", wait)
	}
	if len(th.last) > 3 {
		t.Errorf("%d keys kept, want only those within the interval", len(th.last))
	}
}
