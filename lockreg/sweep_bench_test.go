package lockreg

import (
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/procid"
)

// fullRun opens a run with the default capacities whose process table is
// full (this process and 1,023 others, each with an info file and a stack
// dictionary), as after a long churn.
func fullRun(b *testing.B) (*Registry, string) {
	dir := filepath.Join(b.TempDir(), "run")
	r, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	for i := uint32(1); i < r.a.G.MaxProcs; i++ {
		id := procid.ID{PID: int(1<<29 + i), Start: 1}
		p := r.a.Proc(i)
		p.Owner.Store(1<<32 | uint64(id.PID))
		p.Write(arena.ProcCopy{State: arena.SlotRunning, Pid: uint32(id.PID), Start: id.Start, Tag: 1<<32 | uint64(id.PID)})
		for _, ext := range []string{"json", "stacks"} {
			if err := r.rd.WriteFile(arena.ProcessFile(id, ext), []byte("{}\n")); err != nil {
				b.Fatal(err)
			}
		}
	}
	return r, dir
}

// BenchmarkSweepAfterReclaim is what a reclaim adds to Open: the sweep of a
// run directory of 1,024 processes' files, of which one dead process's two
// files go.
func BenchmarkSweepAfterReclaim(b *testing.B) {
	r, _ := fullRun(b)
	dead := procid.ID{PID: 1<<30 - 1, Start: 7} // no such pid: proven gone
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for _, ext := range []string{"json", "stacks"} {
			if err := r.rd.WriteFile(arena.ProcessFile(dead, ext), []byte("{}\n")); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if n, err := arena.SweepProcessFiles(r.rd, r.a); n != 2 || err != nil {
			b.Fatalf("swept %d files (%v); want the dead process's 2", n, err)
		}
	}
}

// BenchmarkOpenCloseFullTable is its peer: a process opening (taking its
// own slot back) and closing the same run.
func BenchmarkOpenCloseFullTable(b *testing.B) {
	r, dir := fullRun(b)
	r.Close() // its slot, exited, is what the next Open takes back
	for b.Loop() {
		r, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
