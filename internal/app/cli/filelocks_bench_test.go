package cli

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// fileLockKnot sets up 10,000 file locks held by one process, which waits
// for a flock that a second process holds while that one waits for one of
// the 10,000: a cycle, so that attach reports at once (no looking for a
// stuck holder). kind is "posix" (10,000 byte ranges of one file) or
// "flock" (10,000 files). It returns the second process's pid, then the
// first's (the holder of the 10,000).
func fileLockKnot(b *testing.B, kind string, n int) (int, int) {
	dir := b.TempDir()
	h, w := newLocker(b), newLocker(b)
	g := filepath.Join(dir, "g")
	w.do("open g " + g)
	w.do("flock g ex")
	h.do("open g " + g)
	var first string
	switch kind {
	case "posix":
		first = filepath.Join(dir, "records")
		h.do("open f " + first)
		h.do("posixmany f " + strconv.Itoa(n))
		w.do("open f " + first)
		w.ask("posix f w 0 1")
	case "flock":
		many := filepath.Join(dir, "many")
		if err := exec.Command("mkdir", many).Run(); err != nil {
			b.Fatal(err)
		}
		h.do("flockmany " + many + " " + strconv.Itoa(n))
		first = filepath.Join(many, "0")
		w.do("open f " + first)
		w.ask("flock f ex")
	}
	h.ask("flock g ex")
	awaitFileWaiters(b, first, 1)
	awaitFileWaiters(b, g, 1)
	return w.pid(), h.pid()
}

// BenchmarkAttachFileLocks is 'lockwatch attach -o json PID' on a knot of
// 10,000 held file locks (a /proc/locks of 10,000 lines and more), end to
// end: two reads of the lock table and of /proc, the report, its JSON.
// json attaches the process that waits for one of the 10,000 (the report
// shows the cycle; the holder's other locks nobody waits for are counted in
// a note), holder-json the holder itself (its report lists all 10,000).
// Beside them in the same run: read-proc-locks, the kernel printing the
// table once, and lslocks (util-linux), the peer, which lists the same
// table's locks with their paths.
func BenchmarkAttachFileLocks(b *testing.B) {
	for _, kind := range []string{"posix", "flock"} {
		b.Run(kind, func(b *testing.B) {
			w, h := fileLockKnot(b, kind, 10000)
			for _, c := range []struct {
				name string
				pid  int
			}{{"json", w}, {"holder-json", h}} {
				b.Run(c.name, func(b *testing.B) {
					defer reportCPU(b, unix.RUSAGE_SELF)()
					for b.Loop() {
						if code := Main(context.Background(), []string{"attach", "-o", "json", strconv.Itoa(c.pid)}, nil, io.Discard, io.Discard); code != ExitDeadlock {
							b.Fatalf("attach: exit %d; want %d", code, ExitDeadlock)
						}
					}
				})
			}
			b.Run("read-proc-locks", func(b *testing.B) {
				// The floor: the kernel printing the table once (attach
				// reads it twice, the first time to check PID's part).
				defer reportCPU(b, unix.RUSAGE_SELF)()
				for b.Loop() {
					if _, err := os.ReadFile("/proc/locks"); err != nil {
						b.Fatal(err)
					}
				}
			})
			if kind == "flock" {
				// The floor of one exact read of the holder's 10,000
				// flock locks: each one's proof (the fdinfo file of the
				// descriptor that holds it, opened, read and closed) and
				// its file's path (the descriptor's link), read once,
				// one at a time.
				fds := openFds(b, h)
				b.Run("read-fdinfo", func(b *testing.B) {
					defer reportCPU(b, unix.RUSAGE_SELF)()
					buf := make([]byte, 4096)
					for b.Loop() {
						eachFd(b, h, "fdinfo", fds, func(dir int, name string) error {
							f, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
							if err != nil {
								return err
							}
							defer unix.Close(f)
							_, err = unix.Read(f, buf)
							return err
						})
					}
				})
				b.Run("reread-fdinfo", func(b *testing.B) {
					// The same fdinfo files kept open and read again
					// from their start (pread prints the descriptor's
					// state at that moment): what a second read of them
					// would cost, had the first opened them all.
					dir, err := unix.Open("/proc/"+strconv.Itoa(h)+"/fdinfo", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
					if err != nil {
						b.Fatal(err)
					}
					defer unix.Close(dir)
					open := make([]int, 0, len(fds))
					defer func() {
						for _, f := range open {
							unix.Close(f)
						}
					}()
					for _, name := range fds {
						f, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
						if err != nil {
							b.Skipf("fdinfo/%s: %v (too few descriptors allowed?)", name, err)
						}
						open = append(open, f)
					}
					buf := make([]byte, 4096)
					defer reportCPU(b, unix.RUSAGE_SELF)()
					for b.Loop() {
						for _, f := range open {
							if _, err := unix.Pread(f, buf, 0); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
				b.Run("read-links", func(b *testing.B) {
					defer reportCPU(b, unix.RUSAGE_SELF)()
					buf := make([]byte, 4096)
					for b.Loop() {
						eachFd(b, h, "fd", fds, func(dir int, name string) error {
							_, err := unix.Readlinkat(dir, name, buf)
							return err
						})
					}
				})
			}
			b.Run("lslocks", func(b *testing.B) {
				if _, err := exec.LookPath("lslocks"); err != nil {
					b.Skip("no lslocks (util-linux) here")
				}
				if kind == "flock" {
					// util-linux 2.38 did not finish one listing of 10,000
					// flock locks in 7 minutes here (docs/benchmarks.md).
					b.Skip("lslocks takes minutes on 10,000 flock locks")
				}
				defer reportCPU(b, unix.RUSAGE_CHILDREN)()
				for b.Loop() {
					if out, err := exec.Command("lslocks", "--json").Output(); err != nil || len(out) == 0 {
						b.Fatalf("lslocks: %v", err)
					}
				}
			})
		})
	}
}

// reportCPU, called at a benchmark's start, returns what reports at its
// end the CPU time per op of who (RUSAGE_SELF: this process;
// RUSAGE_CHILDREN: its reaped children), user plus system, and each apart:
// the machine is shared, so wall time says more about the others than
// about attach; system time is mostly the kernel printing /proc/locks and
// /proc, user time lockwatch's own work.
func reportCPU(b *testing.B, who int) func() {
	u0, s0 := cpuTime(who)
	return func() {
		u, s := cpuTime(who)
		n := float64(b.N) * 1e6
		b.ReportMetric(float64(u-u0+s-s0)/n, "cpu-ms/op")
		b.ReportMetric(float64(u-u0)/n, "user-ms/op")
		b.ReportMetric(float64(s-s0)/n, "sys-ms/op")
	}
}

// cpuTime is the user and the system CPU time of who, in nanoseconds.
func cpuTime(who int) (user, sys int64) {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0, 0
	}
	return ru.Utime.Nano(), ru.Stime.Nano()
}

// openFds lists the descriptors of pid.
func openFds(b *testing.B, pid int) []string {
	names, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		b.Fatal(err)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n.Name()
	}
	return out
}

// eachFd calls f with pid's /proc directory sub, open, and each
// descriptor's name in it.
func eachFd(b *testing.B, pid int, sub string, fds []string, f func(dir int, name string) error) {
	dir, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/"+sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(dir)
	for _, name := range fds {
		if err := f(dir, name); err != nil {
			b.Fatalf("%s/%s: %v", sub, name, err)
		}
	}
}
