//go:build !nolockwatch && (amd64 || arm64)

package sync_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLateRecordsReaders: a program whose package init read-locks a
// drop-in RWMutex before the probe's init switches the records mode on
// (testdata/lateread). Main's RUnlock of that read lock, which has no
// record, leaves the record of goroutine B, which still reads; another
// goroutine's RUnlock of B's read lock then frees B's record, also while
// a writer waits with a reader behind it (which sync's reader count has).
func TestLateRecordsReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "lateread")
	build := exec.Command("go", "build", "-o", bin, "./testdata/lateread")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin) // killed if it hangs
	// The mode from the probe's init only: neither the environment nor
	// lockwatch run sets it at the drop-in's.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOCKWATCH_DROPIN=") && !strings.HasPrefix(kv, "LOCKWATCH_DIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lateread: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
