package bench

// The comparison behind `make bench-compare`: lockreg against its peers and
// floors in one binary, in three scenarios.
//
//	BenchmarkUncontended/impl=X        one goroutine, one lock, Lock+Unlock in a loop
//	BenchmarkOneLock/procs=2/impl=X    two processes (goroutines for in-process peers) on one lock
//	BenchmarkOwnLocks/procs=P/impl=X   P processes, each on a lock of its own
//
// Cross-process implementations run in child processes: the test binary
// re-runs itself with benchRoleEnv set, and each child does its share of
// b.N operations when the parent says "go" on its stdin, then answers
// "done". The timer covers from the first "go" to the last "done". Each
// child does b.N operations, so ns/op is per process; the custom metrics
// are summed over processes: ns/acq is the wall time per acquire of any
// process, Mops/s the acquires per second of all of them.
//
// The peers:
//   - sync.Mutex and go-deadlock: in-process only, so their "processes" are
//     goroutines of the benchmark process.
//   - cas: the floor of any lock in shared memory: CAS(0 -> 1) to acquire
//     (spinning, with sched_yield now and then), a plain atomic store of 0 to
//     release, on a word of its own cache line in a MAP_SHARED file.
//   - flock and ofd: flock(2) and open-file-description fcntl locks on a file
//     per lock, each process with its own open file.
//   - lockreg and lockreg-norecord: a lockreg.Mutex with the full record,
//     and with Options.NoRecord.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/sasha-s/go-deadlock"
	"golang.org/x/sys/unix"
)

const benchRoleEnv = "LOCKWATCH_BENCH_ROLE" // impl dir lockIndex

func TestMain(m *testing.M) {
	if role := os.Getenv(benchRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// handle is one process's (or goroutine's) handle on one lock.
type handle interface {
	lock()
	unlock()
}

// crossProcess lists the implementations that run in child processes.
var crossProcess = map[string]bool{"cas": true, "flock": true, "ofd": true, "lockreg": true, "lockreg-norecord": true}

// impls is the order of the columns.
var impls = []string{"sync.Mutex", "cas", "lockreg-norecord", "lockreg", "go-deadlock", "flock", "ofd"}

// shared is what in-process implementations share between goroutines.
type shared struct {
	mus [8]sync.Mutex
	dls [8]deadlock.Mutex
}

// open returns a handle of impl on lock i of the run in dir (cross-process
// implementations) or of sh (in-process ones).
func open(impl, dir string, i int, sh *shared) (handle, func(), error) {
	switch impl {
	case "sync.Mutex":
		return syncLocker{&sh.mus[i]}, func() {}, nil
	case "go-deadlock":
		return syncLocker{&sh.dls[i]}, func() {}, nil
	case "cas":
		return openCAS(dir, i)
	case "flock", "ofd":
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("lock-%d", i)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, err
		}
		if impl == "flock" {
			return flockLocker{int(f.Fd())}, func() { f.Close() }, nil
		}
		return ofdLocker{int(f.Fd())}, func() { f.Close() }, nil
	case "lockreg", "lockreg-norecord":
		r, err := lockreg.Open(filepath.Join(dir, "run"), lockreg.Options{NoRecord: impl == "lockreg-norecord"})
		if err != nil {
			return nil, nil, err
		}
		m, err := r.Mutex(fmt.Sprintf("bench.%d", i))
		if err != nil {
			r.Close()
			return nil, nil, err
		}
		return &lockregLocker{m: m, ctx: context.Background()}, func() { r.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown implementation %q", impl)
}

type lockregLocker struct {
	m   *lockreg.Mutex
	ctx context.Context
}

func (l *lockregLocker) lock() {
	if err := l.m.Lock(l.ctx); err != nil {
		panic(err)
	}
}

func (l *lockregLocker) unlock() {
	if err := l.m.Unlock(); err != nil {
		panic(err)
	}
}

// syncLocker adapts sync.Mutex and go-deadlock's Mutex.
type syncLocker struct{ mu sync.Locker }

func (l syncLocker) lock()   { l.mu.Lock() }
func (l syncLocker) unlock() { l.mu.Unlock() }

// casLocker is a spin lock on a word in a MAP_SHARED mapping.
type casLocker struct{ w *atomic.Uint32 }

func openCAS(dir string, i int) (handle, func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "cas"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	const size = 8 * 64
	if err := f.Truncate(size); err != nil {
		return nil, nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return casLocker{(*atomic.Uint32)(unsafe.Pointer(&b[i*64]))}, func() { _ = unix.Munmap(b) }, nil
}

func (c casLocker) lock() {
	for n := 1; !c.w.CompareAndSwap(0, 1); n++ {
		if n%64 == 0 {
			_, _, _ = syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
}

func (c casLocker) unlock() { c.w.Store(0) }

type flockLocker struct{ fd int }

func (l flockLocker) lock() {
	for {
		err := unix.Flock(l.fd, unix.LOCK_EX)
		if err == nil {
			return
		}
		if err != unix.EINTR {
			panic(err)
		}
	}
}

func (l flockLocker) unlock() {
	if err := unix.Flock(l.fd, unix.LOCK_UN); err != nil {
		panic(err)
	}
}

type ofdLocker struct{ fd int }

func (l ofdLocker) set(typ int16, cmd int) {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0}
	for {
		err := unix.FcntlFlock(uintptr(l.fd), cmd, &lk)
		if err == nil {
			return
		}
		if err != unix.EINTR {
			panic(err)
		}
	}
}

func (l ofdLocker) lock()   { l.set(unix.F_WRLCK, unix.F_OFD_SETLKW) }
func (l ofdLocker) unlock() { l.set(unix.F_UNLCK, unix.F_OFD_SETLK) }

// loop is the measured body: n acquires and releases, 10 frames deep so
// that recorded stacks have a realistic depth.
func loop(l handle, n int) {
	deep(depth, func() {
		for i := 0; i < n; i++ {
			l.lock()
			l.unlock()
		}
	})
}

// runChild is a child process: LOCKWATCH_BENCH_ROLE="impl dir lock".
// cpuProfileEnv, set to a path prefix, makes every child process of a
// scenario write its CPU profile to PREFIX.PID.
const cpuProfileEnv = "LOCKWATCH_BENCH_CPUPROFILE"

func runChild(role string) int {
	var impl, dir string
	var i int
	if _, err := fmt.Sscan(role, &impl, &dir, &i); err != nil {
		fmt.Println("error", err)
		return 2
	}
	l, closeFn, err := open(impl, dir, i, nil)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer closeFn()
	if p := os.Getenv(cpuProfileEnv); p != "" {
		// Each child's CPU profile, to see where a scenario's processes
		// spend their time (go tool pprof bench.test PREFIX.*).
		f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid()))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Println("error", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(in.Text())
		if err != nil {
			fmt.Println("error", err)
			return 2
		}
		before := cpuTime()
		loop(l, n)
		fmt.Println("done", (cpuTime() - before).Nanoseconds())
	}
	return 0
}

// worker is one party of a scenario: a child process or a goroutine.
type worker struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Scanner
	l   handle // in-process
}

// startWorkers starts procs parties of impl; lockOf(k) is party k's lock.
func startWorkers(b *testing.B, impl string, procs int, lockOf func(int) int) []*worker {
	dir := b.TempDir()
	sh := &shared{}
	ws := make([]*worker, procs)
	for k := range ws {
		w := &worker{}
		ws[k] = w
		if !crossProcess[impl] {
			l, _, err := open(impl, dir, lockOf(k), sh)
			if err != nil {
				b.Fatal(err)
			}
			w.l = l
			continue
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", benchRoleEnv, impl, dir, lockOf(k)))
		pr, pw, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdin = pr
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pr.Close()
		w.cmd, w.in, w.out = cmd, pw, bufio.NewScanner(stdout)
		b.Cleanup(func() {
			pw.Close()
			if err := cmd.Wait(); err != nil {
				b.Errorf("%s child: %v", impl, err)
			}
		})
		if line := w.expect(b); line != "ready" {
			b.Fatalf("%s child: %s", impl, line)
		}
	}
	return ws
}

func (w *worker) expect(b *testing.B) string {
	if !w.out.Scan() {
		b.Fatalf("child ended: %v", w.out.Err())
	}
	return w.out.Text()
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// userTime is the user CPU time this process has used.
func userTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano())
}

// run has every party do n operations at once, and returns the wall time
// and the CPU time they used: children report theirs; in-process parties
// are counted by this process's CPU time during the run.
func run(b *testing.B, ws []*worker, n int) (wall, cpu time.Duration) {
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	for _, w := range ws {
		if w.cmd != nil {
			fmt.Fprintln(w.in, n)
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); loop(w.l, n) }()
	}
	for _, w := range ws {
		if w.cmd != nil {
			var ns int64
			if _, err := fmt.Sscanf(w.expect(b), "done %d", &ns); err != nil {
				b.Fatalf("child: %v", err)
			}
			cpu += time.Duration(ns)
		}
	}
	wg.Wait()
	wall = time.Since(start)
	if ws[0].cmd == nil {
		cpu = cpuTime() - cpu0
	}
	return wall, cpu
}

// scenario runs procs parties, lockOf(k) naming party k's lock.
func scenario(b *testing.B, impl string, procs int, lockOf func(int) int) {
	ws := startWorkers(b, impl, procs, lockOf)
	_, _ = run(b, ws, 1000) // warm up: first-use costs (stack dictionary, page faults)
	b.ResetTimer()
	wall, cpu := run(b, ws, b.N)
	b.StopTimer()
	total := float64(b.N) * float64(procs)
	b.ReportMetric(float64(wall.Nanoseconds())/total, "ns/acq")
	b.ReportMetric(total/wall.Seconds()/1e6, "Mops/s")
	// CPU time per acquire: what "per CPU" means on a machine shared with
	// other work, where wall-clock throughput depends on how many runnable
	// threads each side has.
	b.ReportMetric(float64(cpu.Nanoseconds())/total, "cpu-ns/acq")
}

// BenchmarkUncontended: one goroutine, one lock; Lock+Unlock 10 frames deep.
func BenchmarkUncontended(b *testing.B) {
	for _, impl := range impls {
		b.Run("impl="+impl, func(b *testing.B) {
			var l handle
			if crossProcess[impl] {
				var closeFn func()
				var err error
				l, closeFn, err = open(impl, b.TempDir(), 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer closeFn()
			} else {
				l, _, _ = open(impl, "", 0, &shared{})
			}
			loop(l, 1000)
			b.ResetTimer()
			cpu0 := cpuTime()
			loop(l, b.N)
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkOneLock: two processes take one lock in a loop.
func BenchmarkOneLock(b *testing.B) {
	for _, impl := range impls {
		b.Run("procs=2/impl="+impl, func(b *testing.B) { scenario(b, impl, 2, func(int) int { return 0 }) })
	}
}

// BenchmarkOwnLocks: P processes, each on a lock of its own. procs=1 is the
// base of the scaling ratio.
func BenchmarkOwnLocks(b *testing.B) {
	for _, procs := range []int{1, 8} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("procs=%d/impl=%s", procs, impl), func(b *testing.B) {
				scenario(b, impl, procs, func(k int) int { return k })
			})
		}
	}
}

// BenchmarkCreate is the cost of creating a new lock in a run that has
// `locks` already: b.N new locks after those, so run it with a small fixed
// -benchtime (`make bench-compare` uses 1000x): the figure is the mean cost
// of locks locks+1 to locks+b.N. Before the timed part, this process's
// robust list is filled (2,048 entries), so that no measured creation links
// an entry: that cost is the same for every lock, and otherwise only the
// first sub-benchmarks would pay it.
func BenchmarkCreate(b *testing.B) {
	fill, err := lockreg.Open(filepath.Join(b.TempDir(), "fill"), lockreg.Options{MaxLocks: 2100, MaxEvents: 2100 * 4})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 2050; i++ {
		if _, err := fill.Mutex("fill." + strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	fill.Close()
	for _, locks := range []int{100, 4000} {
		b.Run(fmt.Sprintf("locks=%d/impl=lockreg", locks), func(b *testing.B) {
			if b.N > 1<<18 {
				b.Skip("run with a fixed -benchtime, e.g. 1000x: every op adds a lock")
			}
			opts := lockreg.Options{MaxProcs: 64, MaxLocks: locks + b.N, MaxWaiters: 64, MaxEvents: 4 * (locks + b.N)}
			r, err := lockreg.Open(filepath.Join(b.TempDir(), "run"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			for i := 0; i < locks; i++ {
				if _, err := r.Mutex("existing." + strconv.Itoa(i)); err != nil {
					b.Fatal(err)
				}
			}
			names := make([]string, b.N)
			for i := range names {
				names[i] = "new." + strconv.Itoa(i)
			}
			b.ResetTimer()
			user0 := userTime()
			for _, name := range names {
				if _, err := r.Mutex(name); err != nil {
					b.Fatal(err)
				}
			}
			// User CPU time: the search for the name. The first touch of
			// each page of the new slots and of the index is a page fault,
			// system time, whatever the number of locks.
			b.ReportMetric(float64((userTime()-user0).Nanoseconds())/float64(b.N), "user-ns/op")
		})
	}
}
