// Package bench compares lockreg with github.com/sasha-s/go-deadlock, the
// usual in-process deadlock detector, in one run. It is a module of its own so
// that lockwatch itself does not depend on go-deadlock.
//
//	cd bench && go test -run '^$' -bench . -count 10 | tee /tmp/cmp.txt
package bench

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/sasha-s/go-deadlock"
)

// depth is how deep below the benchmark each acquire happens, so that both
// tools record a stack of realistic depth.
const depth = 10

//go:noinline
func deep(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	deep(n-1, f)
}

func BenchmarkLockUnlock(b *testing.B) {
	b.Run("impl=sync.Mutex", func(b *testing.B) {
		var mu sync.Mutex
		deep(depth, func() {
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mu.Lock()
				//lint:ignore SA2001 an empty critical section is what is measured
				mu.Unlock()
			}
		})
	})
	b.Run("impl=go-deadlock", func(b *testing.B) {
		var mu deadlock.Mutex
		deep(depth, func() {
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mu.Lock()
				//lint:ignore SA2001 an empty critical section is what is measured
				mu.Unlock()
			}
		})
	})
	for _, rec := range []struct {
		name string
		opts lockreg.Options
	}{{"lockreg", lockreg.Options{}}, {"lockreg-norecord", lockreg.Options{NoRecord: true}}} {
		b.Run("impl="+rec.name, func(b *testing.B) {
			r, err := lockreg.Open(filepath.Join(b.TempDir(), "run"), rec.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			m, err := r.Mutex("bench")
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			deep(depth, func() {
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := m.Lock(ctx); err != nil {
						b.Fatal(err)
					}
					_ = m.Unlock()
				}
			})
		})
	}
}
