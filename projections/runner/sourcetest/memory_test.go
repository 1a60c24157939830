package sourcetest_test

import (
	"testing"

	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
)

type memLog struct{ m *sourcetest.Memory }

var all = []int32{0, 1, 2}

func (l memLog) Append(_ *testing.T, p int32, recs ...runner.RawRecord) { l.m.Append(p, recs...) }
func (l memLog) Range(_ *testing.T, from, to map[int32]int64) runner.Source {
	return l.m.Range(all, from, to)
}
func (l memLog) Group(_ *testing.T, name string) runner.Source { return l.m.Group(name, all) }

func TestMemoryContract(t *testing.T) {
	sourcetest.Run(t, func(*testing.T) sourcetest.Log { return memLog{sourcetest.NewMemory()} })
}
