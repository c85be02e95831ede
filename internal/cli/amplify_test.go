package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/hostile"
)

// TestAmplifyingInputsBounded runs `lockwatch stacks` (a process each) on
// inputs small to read and large to build: a 16 KB gzipped profile of 8.4
// million empty samples, a traceback of tiny goroutines that do not group
// (16 MiB of them; the audit's 63 MiB under make stress-hostile), and
// random bytes, and checks each from the child's rusage against the 256
// MiB goal. Before the bounds on what is built, the profile took 1.3 GB,
// the traceback 2 GB at 63 MiB, the random bytes 171 MB.
func TestAmplifyingInputsBounded(t *testing.T) {
	bin := lockwatchBin(t)
	tiny := 16 << 20
	if stress {
		tiny = 63 << 20
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		data []byte
		code int
		says string // in stderr (an error) or stdout (a note)
	}{
		{"profile", hostile.AmplifyingProfile(16<<20 - 1024), ExitUsage, "samples, more than the 131072 distinct stacks"},
		{"traceback", hostile.TinyGoroutines(tiny), ExitOK, "were counted, not kept"},
		{"random", hostile.RandomBytes(64<<20, 7), ExitUsage, "not a goroutine profile stacks reads"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"stacks", path}, {"stacks", "-o", "json", path}} {
				m := measure(t, bin, nil, args...)
				t.Logf("%v: exit %d, %.1f MiB, cpu %v, wall %v", args, m.code, float64(m.maxRSS)/(1<<20), m.cpu, m.wall)
				if m.code != tt.code || !strings.Contains(m.stdout+m.stderr, tt.says) {
					t.Errorf("%v: exit %d, %.300q; want exit %d saying %q", args, m.code, m.stderr, tt.code, tt.says)
				}
				if m.maxRSS > goalRSS {
					t.Errorf("%v took %d MiB; want at most %d MiB", args, m.maxRSS>>20, goalRSS>>20)
				}
			}
		})
	}
}
