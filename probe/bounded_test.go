package probe

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/lockwatch/lockwatch/stackdump"
)

// TestDumpAfterSwapStaysInRun: a run directory inside a directory other
// users can write is swapped, after the probe started, for a symbolic link
// to another directory; a dump written afterwards still lands in the run
// directory, never through the link.
func TestDumpAfterSwapStaysInRun(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "run")
	a, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	moved, evil := dir+".moved", t.TempDir()
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(evil, dir); err != nil {
		t.Fatal(err)
	}
	path, err := a.dump.profileFile(a.base, "usr1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(moved, filepath.Base(path))); err != nil {
		t.Errorf("the dump is not in the run directory: %v", err)
	}
	if ents, _ := os.ReadDir(evil); len(ents) > 0 {
		t.Errorf("the dump was written through the swapped-in link: %s holds %v", evil, ents[0].Name())
	}
	if err := a.adoptRole("late"); err != nil {
		t.Errorf("recording a role after the swap: %v", err)
	}
	if ents, _ := os.ReadDir(evil); len(ents) > 0 {
		t.Errorf("the info file was written through the swapped-in link: %s holds %v", evil, ents[0].Name())
	}
}

// fakeProbe serves one connection on a new socket with the answer frame
// ans and then the dump frame dump (if not nil), and returns the socket.
func fakeProbe(t *testing.T, ans answer, dump []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		probewire.ReadFrame(c, probewire.MaxRequest)
		b, _ := json.Marshal(ans)
		probewire.WriteFrame(c, b)
		if dump != nil {
			probewire.WriteFrame(c, dump)
		}
	}()
	return path
}

// TestClientRefusesOversizedDumps: a probe (or whatever listens on its
// socket) that announces a dump past the client's limits is refused before
// the dump is read.
func TestClientRefusesOversizedDumps(t *testing.T) {
	for _, tt := range []struct {
		name string
		text bool
		size int
	}{
		{"profile", false, stackdump.MaxProfileSize + 1},
		{"text", true, probeclient.MaxTextDump + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			format := probewire.FormatProto
			if tt.text {
				format = probewire.FormatText
			}
			path := fakeProbe(t, answer{V: probewire.Version, OK: true, Dump: &probewire.Dump{Format: format, Size: tt.size}}, nil)
			c := &probeclient.Client{Path: path}
			var err error
			n := allocated(func() { _, err = c.Goroutines(context.Background(), tt.text) })
			if !errors.Is(err, stackdump.ErrTooLarge) {
				t.Errorf("got %v; want ErrTooLarge", err)
			}
			if n > 1<<20 {
				t.Errorf("the refusal allocated %d bytes; want no buffer for the dump", n)
			}
		})
	}
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
