package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

// The presence push decodes to the frame it stands for, with "online"
// always written (false is news) and lastSeen only when offline and known.
func TestAppendPresencePush(t *testing.T) {
	for _, tc := range []struct {
		account  string
		online   bool
		lastSeen int64
		want     string
	}{
		{"alice", true, 1795714619000, `{"type":"presence","account":"alice","online":true}`},
		{"bob", false, 1795714619000, `{"type":"presence","account":"bob","online":false,"lastSeen":1795714619000}`},
		{"carol", false, 0, `{"type":"presence","account":"carol","online":false}`},
	} {
		got := AppendPresencePush(nil, tc.account, tc.online, tc.lastSeen)
		if string(got) != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
		want := ServerFrame{Type: TypePresencePush, Account: tc.account, Online: tc.online}
		if !tc.online {
			want.LastSeen = tc.lastSeen
		}
		checkSame(t, got, want)
	}
}

// A presence request reads its accounts like any list.
func TestDecodePresence(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"id":"1","type":"presence","accounts":["bob","carol"]}`))
	if err != nil || r.Type != TypePresence || strings.Join(r.Accounts, ",") != "bob,carol" {
		t.Fatalf("%+v %v", r, err)
	}
	b, _ := json.Marshal(ServerFrame{ID: "1", Type: TypePresenceState, Presence: []PresenceInfo{{Account: "bob", Online: true}, {Account: "carol"}}})
	if !strings.Contains(string(b), `{"account":"carol","online":false}`) {
		t.Errorf("an offline account never seen: %s", b)
	}
}
