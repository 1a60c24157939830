package conversations

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
)

// layoutKey holds the layout of the index's keys in the store: "2" once
// UpgradePebble has run. A store without it holds layout 1 (cursors and
// the messages' places under cr/, cm/ and cs/) or nothing yet.
var layoutKey = []byte("cv")

const layout = "2"

// upgradeBatch is how many keys one batch of UpgradePebble moves.
const upgradeBatch = 4096

// UpgradePebble brings the index in db to the current layout (see Pebble)
// and returns how many keys it moved: an index of layout 1 has its cursors
// and the messages' places moved under cc/, none of them changed. Each
// batch moves whole keys (written at the new place, deleted at the old),
// so a start that stops halfway goes on from there the next time. Run it
// before the index is read or written; a store it has moved cannot be read
// by an earlier Parley (its unread counts and cursors would start over).
func UpgradePebble(ctx context.Context, db *pebble.DB) (int, error) {
	v, ok, err := pebblekv.Get(db, layoutKey)
	if err != nil {
		return 0, err
	}
	if ok {
		if string(v) != layout {
			return 0, fmt.Errorf("the conversation index in the store has layout %q, which this Parley does not know (it knows %s)", v, layout)
		}
		return 0, nil
	}
	moved := 0
	for _, prefix := range []string{"cm/", "cr/", "cs/"} {
		n, err := moveLayout1(ctx, db, prefix)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	if err := db.Set(layoutKey, []byte(layout), pebble.Sync); err != nil {
		return moved, fmt.Errorf("cannot mark the conversation index's layout: %w", err)
	}
	return moved, nil
}

// moveLayout1 moves every key under prefix, one of layout 1's, to its
// place in layout 2.
func moveLayout1(ctx context.Context, db *pebble.DB, prefix string) (int, error) {
	it, err := pebblekv.Prefix(db, []byte(prefix))
	if err != nil {
		return 0, err
	}
	b := db.NewBatch()
	moved, inBatch := 0, 0
	commit := func() error {
		if inBatch == 0 {
			return nil
		}
		err := b.Commit(pebble.NoSync)
		_ = b.Close()
		b = db.NewBatch()
		if err != nil {
			return fmt.Errorf("cannot move the conversation index's keys: %w", err)
		}
		moved += inBatch
		inBatch = 0
		return ctx.Err()
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		to, err := layout2Key(prefix, k[len(prefix):])
		if err != nil {
			err = errors.Join(err, it.Close())
			_ = b.Close()
			return moved, err
		}
		if err := errors.Join(b.Set(to, it.Value(), nil), b.Delete(k, nil)); err != nil {
			_ = it.Close()
			_ = b.Close()
			return moved, err
		}
		if inBatch++; inBatch == upgradeBatch {
			if err := commit(); err != nil {
				_ = it.Close()
				_ = b.Close()
				return moved, err
			}
		}
	}
	err = errors.Join(it.Error(), it.Close())
	if err == nil {
		err = commit()
	}
	_ = b.Close()
	return moved, err
}

// layout2Key is the layout-2 key of rest, a key of layout 1 after its
// prefix: "<conversation>/<msgid>" under cm/, "<conversation>/<account>"
// under cr/, "<conversation>/<account>/<msgid>" under cs/, where a msgid
// is 8 bytes (any of which may be '/') and ids hold no '/'.
func layout2Key(prefix string, rest []byte) ([]byte, error) {
	conv, tail, ok := bytes.Cut(rest, []byte("/"))
	if !ok || len(conv) == 0 {
		return nil, fmt.Errorf("corrupt conversation index key %q", prefix+string(rest))
	}
	var kind byte
	switch prefix {
	case "cm/":
		kind = 'm'
		ok = len(tail) == 8
	case "cr/":
		kind = 'r'
		ok = len(tail) > 0 && bytes.IndexByte(tail, '/') < 0
	case "cs/":
		kind = 's'
		ok = len(tail) >= 10 && tail[len(tail)-9] == '/' && bytes.IndexByte(tail[:len(tail)-9], '/') < 0
	}
	if !ok {
		return nil, fmt.Errorf("corrupt conversation index key %q", prefix+string(rest))
	}
	return append(appendConvKey(nil, string(conv), kind), tail...), nil
}
