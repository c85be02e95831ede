package dropinsrc

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// ordersPath is where process id keeps its orders file in dir.
func ordersPath(dir string, id procid.ID) string {
	_, _, base := arena.ProcessFiles(dir, id)
	return filepath.Join(dir, probeclient.OrdersFile(base))
}

// TestOrdersFromFiles: the processes that exited are read from the files
// they left: their edges become order edges (names with the pid when two
// processes have edges), the dropped and untracked counts notes; a file
// that is not an orders file of its process (bad JSON, too large, another
// pid's, a symlink) is a note, never an edge, never a failure of the read.
func TestOrdersFromFiles(t *testing.T) {
	dir := t.TempDir()
	a, b, c, d, e, f := procid.ID{PID: 10, Start: 1}, procid.ID{PID: 20, Start: 2}, procid.ID{PID: 30, Start: 3},
		procid.ID{PID: 40, Start: 4}, procid.ID{PID: 50, Start: 5}, procid.ID{PID: 60, Start: 6}
	site := []stackdump.Frame{{Func: "main.f", File: "f.go", Line: 3}}
	write := func(id procid.ID, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ordersPath(dir, id), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edge := func(from, to string) probeclient.OrderEdge {
		return probeclient.OrderEdge{From: probeclient.OrderMutex{ID: 1, Kind: "mutex", Name: from, Named: true},
			To: probeclient.OrderMutex{ID: 2, Kind: "mutex", Name: to, Named: true}, Goroutine: 7, FromStack: site, ToStack: site, Time: t0}
	}
	write(a, probeclient.OrderView{PID: a.PID, Start: a.Start, Edges: []probeclient.OrderEdge{edge("x", "y")}, Capacity: 4096, Dropped: 3, Untracked: 2})
	write(b, probeclient.OrderView{PID: b.PID, Start: b.Start, Edges: []probeclient.OrderEdge{edge("y", "x")}, Capacity: 4096})
	write(c, probeclient.OrderView{PID: 99, Start: c.Start, Edges: []probeclient.OrderEdge{edge("p", "q")}})
	if err := os.WriteFile(ordersPath(dir, d), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ordersPath(dir, e), []byte(strings.Repeat(" ", maxOrdersFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ordersPath(dir, a), ordersPath(dir, f)); err != nil {
		t.Fatal(err)
	}
	var ps []arena.Process
	for _, id := range []procid.ID{a, b, c, d, e, f, {PID: 70, Start: 7}} {
		ps = append(ps, arena.Process{PID: id.PID, Start: id.Start, State: arena.ProcExited})
	}
	src := Ended(dir)
	src.Processes = func(string) ([]arena.Process, error) { return ps, nil }
	s, err := src.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []lockstate.OrderEdge{
		{From: lockstate.Key{Kind: "mutex", Name: "x (pid 10)"}, To: lockstate.Key{Kind: "mutex", Name: "y (pid 10)"}},
		{From: lockstate.Key{Kind: "mutex", Name: "y (pid 20)"}, To: lockstate.Key{Kind: "mutex", Name: "x (pid 20)"}},
	}
	if len(s.Orders) != len(want) {
		t.Fatalf("orders %+v; want %d", s.Orders, len(want))
	}
	for i, w := range want {
		g := s.Orders[i]
		if g.From != w.From || g.To != w.To || g.Goroutine != 7 || g.FromStack == 0 || g.ToStack == 0 {
			t.Errorf("edge %d: %+v; want %v -> %v with goroutine 7 and both stacks", i, g, w.From, w.To)
		}
		if fs, ok := s.Stacks.Stack(g.ID, g.ToStack); !ok || len(fs) != 1 {
			t.Errorf("edge %d: stack %v; want the recorded one", i, fs)
		}
	}
	if s.OrdersDropped != 3 {
		t.Errorf("dropped %d; want 3", s.OrdersDropped)
	}
	notes := strings.Join(s.Notes, "\n")
	for _, w := range []string{"pid 10: 3 lock-order edges", "pid 10: 2 acquires", "pid 30's", "names pid 99",
		"pid 40's", "pid 50's", "larger than the 4 MiB", "pid 60's"} {
		if !strings.Contains(notes, w) {
			t.Errorf("notes lack %q:\n%s", w, notes)
		}
	}
	if strings.Contains(notes, "pid 70") {
		t.Errorf("a process that left no file has a note:\n%s", notes)
	}
}
