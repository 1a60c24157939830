package keys

import (
	"container/list"
	"time"

	"github.com/parley-chat/parley/events"
)

// lru is a map bounded in entries that evicts the least recently used,
// and whose entries expire. Not safe for concurrent use: Ring locks it.
type lru struct {
	max   int
	order *list.List // front: most recently used
	items map[string]*list.Element
}

type lruEntry struct {
	name  string
	key   events.DataKey
	until time.Time
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(name string, now time.Time) (events.DataKey, bool) {
	el, ok := c.items[name]
	if !ok {
		return events.DataKey{}, false
	}
	e := el.Value.(*lruEntry)
	if !now.Before(e.until) {
		c.order.Remove(el)
		delete(c.items, name)
		return events.DataKey{}, false
	}
	c.order.MoveToFront(el)
	return e.key, true
}

func (c *lru) put(name string, k events.DataKey, until time.Time) {
	if el, ok := c.items[name]; ok {
		el.Value = &lruEntry{name: name, key: k, until: until}
		c.order.MoveToFront(el)
		return
	}
	c.items[name] = c.order.PushFront(&lruEntry{name: name, key: k, until: until})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry).name)
	}
}

func (c *lru) remove(name string) {
	if el, ok := c.items[name]; ok {
		c.order.Remove(el)
		delete(c.items, name)
	}
}

// removeIf scans every entry: for erasures, which are rare.
func (c *lru) removeIf(f func(events.DataKey) bool) {
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*lruEntry); f(e.key) {
			c.order.Remove(el)
			delete(c.items, e.name)
		}
		el = next
	}
}
