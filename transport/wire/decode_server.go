package wire

import "encoding/json"

// DecodeServerFrame reads a frame the server sent. The frames a client
// gets most — pushes of new messages, acks and sync replies — are read
// without encoding/json when they have the plain shape the server writes (keys
// spelled exactly, each once; integers; strings as decodeFast reads
// them); anything else goes through encoding/json, with its rules. The
// frame is the same either way (FuzzDecodeServerFrame checks it).
func DecodeServerFrame(frame []byte) (ServerFrame, error) {
	var f ServerFrame
	if decodeServerFast(frame, &f) {
		return f, nil
	}
	f = ServerFrame{}
	err := json.Unmarshal(frame, &f)
	return f, err
}

// decodeServerFast reads frame into f (zero) when it is a plain push,
// ack or sync reply, reporting false otherwise (f is then part-filled).
func decodeServerFast(frame []byte, f *ServerFrame) bool {
	d := fastDecoder{b: frame}
	return d.object(func(key []byte) (uint32, bool) {
		switch string(key) {
		case "id":
			return 1 << 0, d.str(&f.ID)
		case "type":
			return 1 << 1, d.str(&f.Type)
		case "msgId":
			return 1 << 2, d.int(&f.MsgID)
		case "messageId":
			return 1 << 3, d.str(&f.MessageID)
		case "conversation":
			return 1 << 4, d.str(&f.Conversation)
		case "serverTime":
			return 1 << 5, d.int(&f.ServerTime)
		case "duplicate":
			return 1 << 6, d.boolean(&f.Duplicate)
		case "prevMsgId":
			return 1 << 7, d.int(&f.PrevMsgID)
		case "message":
			f.Message = &Message{}
			return 1 << 8, d.message(f.Message)
		case "messages":
			return 1 << 9, d.messages(&f.Messages)
		case "source":
			return 1 << 10, d.str(&f.Source)
		case "hasMore":
			return 1 << 11, d.boolean(&f.HasMore)
		case "goneThrough":
			return 1 << 12, d.int(&f.GoneThrough)
		case "next":
			f.Next = &Cursor{}
			return 1 << 13, d.cursor(f.Next)
		case "changes":
			return 1 << 14, d.messages(&f.Changes)
		case "changesMore":
			return 1 << 15, d.boolean(&f.ChangesMore)
		}
		return 0, false
	}) && d.end()
}

// messages reads an array of Message objects; an empty array is an
// empty, not a nil, slice, as encoding/json makes it.
func (d *fastDecoder) messages(dst *[]Message) bool {
	out := []Message{}
	if !d.array(func() bool {
		var m Message
		ok := d.message(&m)
		out = append(out, m)
		return ok
	}) {
		return false
	}
	*dst = out
	return true
}

// cursor reads a Cursor object.
func (d *fastDecoder) cursor(c *Cursor) bool {
	return d.object(func(key []byte) (uint32, bool) {
		switch string(key) {
		case "lastTime":
			return 1 << 0, d.int(&c.LastTime)
		case "lastMsgId":
			return 1 << 1, d.int(&c.LastMsgID)
		}
		return 0, false
	})
}

// message reads a Message object.
func (d *fastDecoder) message(m *Message) bool {
	return d.object(func(key []byte) (uint32, bool) {
		switch string(key) {
		case "msgId":
			return 1 << 0, d.int(&m.MsgID)
		case "messageId":
			return 1 << 1, d.str(&m.MessageID)
		case "clientMsgId":
			return 1 << 2, d.str(&m.ClientMsgID)
		case "conversation":
			return 1 << 3, d.str(&m.Conversation)
		case "from":
			return 1 << 4, d.str(&m.From)
		case "device":
			return 1 << 5, d.str(&m.Device)
		case "kind":
			return 1 << 6, d.str(&m.Kind)
		case "body":
			return 1 << 7, d.str(&m.Body)
		case "serverTime":
			return 1 << 8, d.int(&m.ServerTime)
		case "editedAt":
			return 1 << 9, d.int(&m.EditedAt)
		case "deleted":
			return 1 << 10, d.boolean(&m.Deleted)
		}
		return 0, false
	})
}
