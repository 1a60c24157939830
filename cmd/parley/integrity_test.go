package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/transport/client"
)

// segments are the conversation topic's segment files of a stopped
// embedded node, by partition.
func segments(t *testing.T, dataDir string) map[int32]string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dataDir, "log", "partitions", events.DefaultConversationTopic+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]string{}
	for _, d := range dirs {
		p, err := strconv.Atoi(d[strings.LastIndexByte(d, '-')+1:])
		if err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(d, "*.dat"))
		if len(files) > 0 {
			slices.Sort(files)
			out[int32(p)] = files[len(files)-1]
		}
	}
	return out
}

// sendMany sends n messages in each of conversations (alice to each
// peer) and returns the highest msgid acknowledged.
func sendMany(t *testing.T, c *client.Client, peers []string, n int) int64 {
	t.Helper()
	var top int64
	for i := 0; i < n; i++ {
		for _, p := range peers {
			ack, err := c.Send(ctxT(t), client.Target{Account: p}, fmt.Sprintf("%s-%d-%d", p, i, time.Now().UnixNano()), "", strings.Repeat("x", 200))
			if err != nil {
				t.Fatal(err)
			}
			top = max(top, ack.MsgID)
		}
	}
	return top
}

// A stopped node whose log lost records — a byte flipped in the middle of
// one partition's segment, the last bytes of another's cut off — refuses
// to start, naming the partitions and offsets, and the broker's own
// warning is in the node's log. `parley log repair` accepts the loss: the
// node keeps the history it held, and every new msgid is above every
// msgid ever acknowledged.
func TestEmbeddedLogLossIsRefusedThenRepaired(t *testing.T) {
	logs := &lockedBuffer{}
	s := startServer(t, func(c *node.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	peers := []string{"bob", "carol", "dave", "erin", "frank", "grace"}
	alice := s.dial("alice", "phone")
	top := sendMany(t, alice, peers, 40)
	// The store holds every message before the stop, so that what the
	// damaged log loses is only the log's: the history must keep it all.
	waitFor(t, func() bool {
		_, body := httpGet(t, "http://"+s.n.Addr()+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "parley_projection_lag_records{") && strings.Contains(line, `projection="parley.projection.store"`) && !strings.HasSuffix(line, " 0") {
				return false
			}
		}
		return strings.Contains(body, `projection="parley.projection.store"`)
	})
	s.stop()

	segs := segments(t, s.dir)
	if len(segs) < 2 {
		t.Fatalf("want segments in two partitions at least, got %v", segs)
	}
	parts := slices.Sorted(func(yield func(int32) bool) {
		for p := range segs {
			if !yield(p) {
				return
			}
		}
	})
	corrupt, cut := parts[0], parts[1]
	b, err := os.ReadFile(segs[corrupt])
	if err != nil {
		t.Fatal(err)
	}
	// A run of bytes, so that some fall under the batch's checksum (a
	// batch's first offset and leader epoch are outside it).
	for i := len(b) / 2; i < len(b)/2+16; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(segs[corrupt], b, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(segs[cut])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[cut], fi.Size()-10); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := s.config()
	n, err := node.Start(ctx, cfg)
	if err == nil {
		_ = n.Shutdown(ctx)
		t.Fatal("a node started on a log that lost acknowledged records")
	}
	var loss *node.LogLossError
	if !errors.As(err, &loss) {
		t.Fatalf("start on a damaged log: %v, want a LogLossError", err)
	}
	got := map[int32]node.LogLoss{}
	for _, l := range loss.Losses {
		got[l.Partition] = l
		if l.End >= l.Need {
			t.Errorf("loss %+v: the end is not below what was held", l)
		}
	}
	for _, p := range []int32{corrupt, cut} {
		if _, ok := got[p]; !ok {
			t.Errorf("partition %d is not named in the refusal: %v", p, err)
		}
	}
	for _, want := range []string{fmt.Sprintf("partition %d ends at offset", corrupt), "parley log repair"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if !strings.Contains(logs.String(), "corrupt") {
		t.Errorf("the broker's warning about the corrupt segment is not in the node's log:\n%s", logs.String())
	}

	// The repair serves no client while it applies a log it is about to
	// move aside: no listener at all.
	repairLogs := &lockedBuffer{}
	rcfg := cfg
	rcfg.Logger = slog.New(slog.NewTextHandler(repairLogs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rep, err := node.RepairLog(ctx, rcfg)
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	if l := repairLogs.String(); strings.Contains(l, "parley serving") || !strings.Contains(l, "no listener") {
		t.Errorf("the repair's node listened for clients:\n%s", l)
	}
	if rep.Epoch != 2 || len(rep.Lost.Losses) != len(loss.Losses) {
		t.Errorf("repair report %+v, want epoch 2 and the losses %v", rep, loss.Losses)
	}
	if _, err := os.Stat(rep.Moved); err != nil {
		t.Errorf("the damaged log is not kept aside: %v", err)
	}
	if _, err := node.RepairLog(ctx, cfg); !errors.Is(err, node.ErrNothingToRepair) {
		t.Errorf("a second repair: %v, want nothing to repair", err)
	}

	s.start()
	alice = s.dial("alice", "laptop")
	for _, p := range peers {
		if got := len(history(t, alice, "d:alice:"+p)); got != 40 {
			t.Errorf("after the repair d:alice:%s holds %d messages, want 40", p, got)
		}
		ack, err := alice.Send(ctxT(t), client.Target{Account: p}, "after-"+p, "", "after the repair")
		if err != nil {
			t.Fatal(err)
		}
		if ack.MsgID <= top {
			t.Errorf("a msgid after the repair, %d, is not above every acknowledged one (%d)", ack.MsgID, top)
		}
	}
	// The epoch stays raised though the configuration says 1.
	s.restart()
	ack, err := s.dial("alice", "tablet").Send(ctxT(t), client.Target{Account: "bob"}, "after-restart", "", "x")
	if err != nil || ack.MsgID <= top {
		t.Errorf("after a restart: %+v %v, want a msgid above %d", ack, err, top)
	}
}

// A repair of a directory that holds no node (a mistyped --data-dir) is
// refused and creates nothing there: it would otherwise start a new node
// and report that nothing was lost.
func TestRepairRefusesADirectoryWithoutANode(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "parley-dta")
	var out bytes.Buffer
	err := run([]string{"log", "repair", "--data-dir", typo}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "holds no Parley node") {
		t.Fatalf("repair of %s: %v\n%s", typo, err, out.String())
	}
	if _, err := os.Stat(typo); !os.IsNotExist(err) {
		t.Errorf("the repair created %s: %v", typo, err)
	}
}
