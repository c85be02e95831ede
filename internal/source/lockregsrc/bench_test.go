package lockregsrc_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/source/lockregsrc"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/report"
)

// BenchmarkDiagnoseOrders is what lockwatch attach does (read the arena,
// check the processes, diagnose, build the report), on a run of 142 locks:
// edges=0 takes every pair i<j one lock after the other, edges=10000 takes
// every pair i<j nested (10,011 edges) plus one pair the other way round,
// so that the order graph is one component of all 142 locks with a
// lock-order finding to report. Both take the same acquires, so the arena
// holds as many events (a ring of 1024, so that their cost does not hide
// the edges').
func BenchmarkDiagnoseOrders(b *testing.B) {
	const locks = 142
	for _, nested := range []bool{false, true} {
		name := "edges=0"
		if nested {
			name = "edges=10000"
		}
		b.Run(name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "run")
			r, err := lockreg.Open(dir, lockreg.Options{MaxEdges: 16384, MaxEvents: 1024})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			ms := make([]*lockreg.Mutex, locks)
			for i := range ms {
				if ms[i], err = r.Mutex(fmt.Sprintf("lock.%03d", i)); err != nil {
					b.Fatal(err)
				}
			}
			pair := func(x, y *lockreg.Mutex) {
				if err := x.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := y.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				_ = y.Unlock()
				_ = x.Unlock()
			}
			for i := range ms {
				for j := i + 1; j < locks; j++ {
					if nested {
						pair(ms[i], ms[j])
					} else { // the same acquires, so the same events
						_ = ms[i].Lock(ctx)
						_ = ms[i].Unlock()
						_ = ms[j].Lock(ctx)
						_ = ms[j].Unlock()
					}
				}
			}
			if nested {
				pair(ms[locks-1], ms[0])
			}
			src := report.Sources{Locks: []lockstate.Source{lockregsrc.New(dir)}, Host: liveness.System{}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rep, err := report.Diagnose(ctx, src, report.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if got := len(rep.Findings); nested && got != 1 || !nested && got != 0 {
					b.Fatalf("got %d findings", got)
				}
			}
		})
	}
}
