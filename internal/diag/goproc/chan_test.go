package goproc_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
)

// TestChans reads the channels that goroutines of the target wait for:
// a send, a receive, a select (two channels and a nil one), the holder of
// muHeld and the reader of rw (a receive from the channel printed as
// never), and three goroutines on one channel; checked against the
// addresses the target printed (%p of each channel).
func TestChans(t *testing.T) {
	for _, kind := range []string{"default", "stripped", "go1.27", "go1.27-stripped"} {
		t.Run(kind, func(t *testing.T) {
			tg := start(t, build(t, kind), "-chans", "-n", "3")
			printed := map[string][]uint64{}
			for _, line := range tg.said {
				f := strings.Fields(line)
				var key string
				var addrs []uint64
				for _, w := range f {
					if a, err := strconv.ParseUint(strings.TrimPrefix(w, "0x"), 16, 64); strings.HasPrefix(w, "0x") && err == nil {
						addrs = append(addrs, a)
					} else {
						key = strings.TrimSpace(key + " " + w)
					}
				}
				printed[key] = addrs
			}
			if len(printed) != 4 {
				t.Fatalf("the target printed %q; want its 4 lines of channels", tg.said)
			}
			p, err := goproc.Attach(tg.cmd.Process.Pid, goproc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			img := settled(t, p)
			want := map[string][]uint64{
				"main.blockOnChans.func1": printed["chan send"],
				"main.blockOnChans.func2": printed["chan receive"],
				"main.blockOnChans.func3": slices.Sorted(slices.Values(printed["select"])),
				"main.holdAndBlock":       printed["never"],
				"main.readAndBlock":       printed["never"],
			}
			reasons := map[string]string{"main.blockOnChans.func1": "chan send", "main.blockOnChans.func2": "chan receive", "main.blockOnChans.func3": "select"}
			seen := map[string]bool{}
			var idle []uint64
			for _, g := range img.Goroutines {
				fn := ""
				for f := range want {
					if g.Calls(f) {
						fn = f
					}
				}
				switch {
				case fn != "":
					seen[fn] = true
					if !slices.Equal(g.Chans, want[fn]) {
						t.Errorf("g%d in %s (%s) waits for channels %s; the target printed %s", g.ID, fn, g.WaitReason, hexes(g.Chans), hexes(want[fn]))
					}
					if r := reasons[fn]; r != "" && g.WaitReason != r {
						t.Errorf("g%d in %s: wait reason %q; want %q", g.ID, fn, g.WaitReason, r)
					}
				case g.Calls("main.idle"):
					if len(g.Chans) != 1 {
						t.Errorf("idle g%d waits for channels %s; want one", g.ID, hexes(g.Chans))
					}
					idle = append(idle, g.Chans...)
				case !strings.HasPrefix(g.WaitReason, "chan ") && !strings.HasPrefix(g.WaitReason, "select") && g.Chans != nil:
					t.Errorf("g%d (%s %s) waits for channels %s; want none", g.ID, g.Status, g.WaitReason, hexes(g.Chans))
				}
			}
			if len(seen) != len(want) {
				t.Errorf("goroutines found in %v; want each of %d functions", seen, len(want))
			}
			if len(idle) != 3 || idle[0] != idle[1] || idle[1] != idle[2] {
				t.Errorf("the idle goroutines wait for %s; want one channel, three times", hexes(idle))
			}
			for _, n := range img.Notes {
				if strings.Contains(n, "channels they wait for") || strings.Contains(n, "select of more") {
					t.Errorf("note: %s", n)
				}
			}
		})
	}
}

func hexes(as []uint64) string {
	var s []string
	for _, a := range as {
		s = append(s, fmt.Sprintf("%#x", a))
	}
	return "[" + strings.Join(s, " ") + "]"
}
