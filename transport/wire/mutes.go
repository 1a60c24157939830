package wire

// Mutes (docs/protocol.md, "Mute"): mute and unmute change whether the
// account gets offline notifications of a conversation; the reply to both
// is mute_state.
const (
	// TypeMute is the request: Conversation, and Until (Unix ms; absent
	// or 0: until unmuted; a time that has passed unmutes).
	TypeMute = "mute"
	// TypeUnmute is the request: Conversation.
	TypeUnmute = "unmute"
	// TypeMuteState replies to both: Conversation, Muted, MutedUntil.
	TypeMuteState = "mute_state"
)

func init() {
	knownTypes[TypeMute] = []string{"conversation", "until"}
	knownTypes[TypeUnmute] = []string{"conversation"}
}

// Mute is an account's mute of a conversation as a reply and the
// conversation list carry it.
type Mute struct {
	Muted bool `json:"muted"`
	// MutedUntil is when the mute ends (Unix ms); absent for a mute
	// without end or no mute.
	MutedUntil int64 `json:"mutedUntil,omitempty"`
}

// FromMute maps a mute: untilMs 0 for none or no end.
func FromMute(muted bool, untilMs int64) *Mute {
	if !muted {
		return &Mute{}
	}
	return &Mute{Muted: true, MutedUntil: untilMs}
}
