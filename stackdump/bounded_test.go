package stackdump_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/app/hostile"
	"github.com/lockwatch/lockwatch/stackdump"
)

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestGzipBombRefused: a goroutine profile that inflates to 256 MiB (256
// KiB of gzip) is refused with ErrTooLarge having inflated no more than the
// limit. Before the limit, ParseProfile inflated all of it (and the audit's
// 9.4 MB bomb took 4.5 GB).
func TestGzipBombRefused(t *testing.T) {
	bomb := hostile.GzipBomb(256 << 20)
	var err error
	n := allocated(func() { _, err = stackdump.ParseProfile(bomb) })
	if !errors.Is(err, stackdump.ErrTooLarge) || !strings.Contains(err.Error(), "gzip bomb") {
		t.Errorf("got %v; want ErrTooLarge naming a gzip bomb", err)
	}
	if n > 6*stackdump.MaxProfileSize {
		t.Errorf("refusing the bomb allocated %d MiB; want at most %d MiB", n>>20, 6*stackdump.MaxProfileSize>>20)
	}
}

// TestProfileStillParses: a real goroutine profile, gzipped as
// CaptureProfile returns it, is read through the limit.
func TestProfileStillParses(t *testing.T) {
	b, err := stackdump.CaptureProfile()
	if err != nil {
		t.Fatal(err)
	}
	p, err := stackdump.ParseProfile(b)
	if err != nil || len(p.Samples) == 0 {
		t.Fatalf("got %v, %v; want samples", p, err)
	}
}
