package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// ExitError carries the status the program exits with. Main has already
// written what the user needs to know on stderr when it returns one.
type ExitError struct {
	Code int
	Err  error // the cause, when there is one; already reported
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("exit status %d: %v", e.Code, e.Err)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the status a program exits with after Main returned err: 0
// for nil, an *ExitError's code (Main has reported it), else 1 after
// err is written on stderr (Main returns no other error; a change that
// broke that must not exit 0 in silence).
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	fmt.Fprintln(stderr, "demo:", err)
	return exitLost
}

// Exit statuses.
const (
	exitLost        = 1   // messages were lost, or the run failed
	exitUsage       = 2   // bad flags
	exitInterrupted = 130 // ctx ended (SIGINT or SIGTERM)
)

// hangPipeSize is the queue pipe's capacity under --hang: one page, the
// smallest the kernel allows.
const hangPipeSize = 4096

// config is the parsed command line.
type config struct {
	items, workers, payload int
	work                    int
	fix, hang               bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.items, "items", 20000, "number of input `items`")
	fs.IntVar(&c.workers, "workers", 2, "number of worker `processes` in the pool")
	fs.IntVar(&c.payload, "payload", 2000, "`bytes` of payload in each message")
	fs.IntVar(&c.work, "work", DefaultWork, "`iterations` of the CPU-bound step per item")
	fs.BoolVar(&c.fix, "fix", false, "close and join the pool before leaving it: every worker flushes its queue and exits")
	fs.BoolVar(&c.hang, "hang", false, "make the bug certain: kill the pool while a worker holds the queue's write lock")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: demo [--items N] [--workers N] [--payload BYTES] [--work N] [--fix | --hang]

The Go twin of a Python multiprocessing program that deadlocks: a pool of
worker processes puts results on a queue shared with a writer process, and
leaving the pool kills the workers, maybe while one holds the queue's lock.
The last line is "produced N delivered M"; the exit status is 0 when M == N,
1 when messages were lost.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}

	var bad string
	switch {
	case fs.NArg() > 0:
		bad = fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case c.items < 0:
		bad = fmt.Sprintf("--items %d: must be 0 or more", c.items)
	case c.work < 0:
		bad = fmt.Sprintf("--work %d: must be 0 or more", c.work)
	case c.workers < 1:
		bad = fmt.Sprintf("--workers %d: must be 1 or more", c.workers)
	case c.payload < 0 || c.payload > MaxBody-16:
		bad = fmt.Sprintf("--payload %d: must be from 0 to %d", c.payload, MaxBody-16)
	case c.hang && c.items*(c.payload+16+headerSize) <= 2*hangPipeSize:
		bad = fmt.Sprintf("--hang with --items %d of --payload %d: too little output to fill the pipe, so no feeder would be caught holding the lock; give more items", c.items, c.payload)
	case c.fix && c.hang:
		bad = "--fix and --hang exclude each other"
	}
	if bad != "" {
		fmt.Fprintln(stderr, "demo:", bad)
		fs.Usage()
		return c, errors.New(bad)
	}
	return c, nil
}

// Main runs the demo with the command-line arguments args (without the
// program name). The process's role, from $LOCKWATCH_ROLE, says which part
// it plays: "worker" and "writer" are the children that main starts; any
// other value, or none, is main. Main writes the run's report on stdout and
// problems on stderr, and returns nil or an *ExitError. When ctx ends, main
// kills its children and returns an *ExitError with status 130.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return &ExitError{Code: exitUsage, Err: err}
	}
	role := os.Getenv(probe.EnvRole)
	if role == "worker" || role == "writer" {
		return runChild(ctx, role, c, stdout, stderr)
	}
	return runMain(ctx, c, stdout, stderr)
}

// runChild runs a child's role. A child ends at once when ctx ends, as it
// would by the signal's default action.
func runChild(ctx context.Context, role string, c config, stdout, stderr io.Writer) error {
	done := make(chan error, 1)
	go func() {
		if role == "worker" {
			done <- runWorker(ctx, c.payload, c.work)
		} else {
			done <- runWriter(stdout)
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintf(stderr, "demo %s: %v\n", role, err)
			return &ExitError{Code: exitLost, Err: err}
		}
		return nil
	case <-ctx.Done():
		return &ExitError{Code: exitInterrupted, Err: ctx.Err()}
	}
}

// childEnv returns the environment of a child playing role in the run dir.
func childEnv(dir, role string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, probe.EnvDir+"=") || strings.HasPrefix(kv, probe.EnvRole+"=")
	})
	return append(env, probe.EnvDir+"="+dir, probe.EnvRole+"="+role)
}

// runMain is the main process: the seed program, line by line.
func runMain(ctx context.Context, c config, stdout, stderr io.Writer) error {
	fail := func(err error) error {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "demo: interrupted")
			return &ExitError{Code: exitInterrupted, Err: ctx.Err()}
		}
		fmt.Fprintln(stderr, "demo:", err)
		return &ExitError{Code: exitLost, Err: err}
	}
	agent, err := probe.Start(probe.Options{Role: "main"})
	if err != nil {
		return fail(err)
	}
	// Close marks a clean exit in the run; a run that fails says so by
	// leaving main's entry open.
	reg := agent.Registry()
	wlock, err := reg.Mutex(LockName)
	if err != nil {
		return fail(errors.Join(err, agent.Close()))
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(errors.Join(err, agent.Close()))
	}
	sp := newSpawner()
	defer sp.close() // kills any child still running, whatever happened

	// q = mp.Queue(); w = mp.Process(target=writer_f, args=(q,)); w.start()
	qr, qw, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer qw.Close()
	w, err := startWriter(sp, exe, childEnv(agent.Dir(), "writer"), qr, stdout, stderr)
	qr.Close()
	if err != nil {
		return fail(err)
	}
	defer w.kill()
	if c.hang {
		// Hold the reader back and make the pipe small: it fills, and a
		// feeder that writes then blocks in write(2) holding the lock, so
		// that one is sure to hold it when the pool is left (catchHolder).
		if _, err := unix.FcntlInt(qw.Fd(), unix.F_SETPIPE_SZ, hangPipeSize); err != nil {
			return fail(fmt.Errorf("shrinking the queue's pipe: %w", err))
		}
		if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return fail(err)
		}
	}

	// with mp.Pool(2, ...) as p:
	childArgs := []string{fmt.Sprintf("--payload=%d", c.payload), fmt.Sprintf("--work=%d", c.work)}
	pool, err := startPool(sp, c.workers, exe, childArgs, childEnv(agent.Dir(), "worker"), qw, stderr)
	if err != nil {
		return fail(err)
	}
	produced, err := withPool(ctx, pool, c, reg, LockName, stderr)
	if c.hang {
		_ = w.cmd.Process.Signal(syscall.SIGCONT) // an error means it is gone
	}
	if err != nil {
		return fail(err)
	}

	// q.put('STOP'); w.join()
	q := newQueue(ctx, qw, wlock)
	if err := q.Put(KindStop, []byte("STOP")); err != nil {
		return fail(err)
	}
	res, err := w.join(ctx)
	q.Close()
	if err != nil {
		return fail(errors.Join(err, q.Wait()))
	}
	if err := q.Wait(); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
	}
	if err := agent.Close(); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
	}
	if res.Err != "" {
		fmt.Fprintln(stderr, "demo: writer:", res.Err)
	}
	fmt.Fprintf(stdout, "produced %d delivered %d\n", produced, res.Delivered)
	if res.Delivered != produced || !res.Stopped {
		return &ExitError{Code: exitLost, Err: fmt.Errorf("%d of %d messages lost", produced-res.Delivered, produced)}
	}
	return nil
}

// withPool is the body of the seed's with block: map, then, with the fix,
// close and join; and leaving it terminates the pool, whatever happened.
func withPool(ctx context.Context, pool *Pool, c config, reg *lockreg.Registry, lock string, stderr io.Writer) (produced int, err error) {
	defer pool.Terminate()
	produced, err = pool.Map(ctx, c.items)
	if err != nil {
		return produced, err
	}
	switch {
	case c.fix:
		if err := pool.Close(); err != nil {
			return produced, err
		}
		if err := pool.Join(ctx); err != nil {
			return produced, err
		}
	case c.hang:
		pid, err := pool.catchHolder(ctx, reg, lock)
		if err != nil {
			if ctx.Err() != nil {
				return produced, err
			}
			fmt.Fprintf(stderr, "demo: --hang: %v; terminating the pool anyway\n", err)
		} else {
			fmt.Fprintf(stderr, "demo: --hang: worker %d holds %s; terminating the pool\n", pid, lock)
		}
	}
	return produced, nil
}

// A writerProc is the writer process, seen from main.
type writerProc struct {
	cmd    *exec.Cmd
	result *os.File // read end of the result pipe
	exited chan struct{}
	err    error // cmd.Wait's; read after exited
}

func startWriter(sp *spawner, exe string, env []string, qr *os.File, stdout, stderr io.Writer) (*writerProc, error) {
	rr, rw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	cmd := exec.Command(exe)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{qr, rw} // fdQueue, fdResult
	if err := sp.start(cmd); err != nil {
		rr.Close()
		return nil, fmt.Errorf("start writer: %w", err)
	}
	w := &writerProc{cmd: cmd, result: rr, exited: make(chan struct{})}
	go func() {
		defer close(w.exited)
		w.err = cmd.Wait()
	}()
	return w, nil
}

// join waits for the writer to exit, then reads its result.
func (w *writerProc) join(ctx context.Context) (writerResult, error) {
	var r writerResult
	select {
	case <-w.exited:
	case <-ctx.Done():
		return r, ctx.Err()
	}
	defer w.result.Close()
	if err := json.NewDecoder(w.result).Decode(&r); err != nil {
		return r, fmt.Errorf("writer (%v) left no result: %w", w.err, err)
	}
	if w.err != nil {
		return r, fmt.Errorf("writer: %w", w.err)
	}
	return r, nil
}

// kill kills the writer if it still runs, and waits until it is reaped.
func (w *writerProc) kill() {
	select {
	case <-w.exited:
	default:
		_ = w.cmd.Process.Kill() // an error means it is reaped already
		<-w.exited
	}
	w.result.Close()
}

// DefaultWork is the default number of iterations of step 1 per item. The
// Python original runs 2,000 iterations of its loop, which CPython takes some
// 100 us for. Go runs 2,000 in about 2 us: so fast that the workers' feeders
// fall far behind, and the pool is killed mid-write in nearly every run
// (measured here: 16 to 20 runs of 20 hung). The window is set by the ratio
// of compute to pipe writes, so this restores some of Python's compute per
// item: with 8,000 iterations a run here hung, lost messages or delivered all
// about as often as the Python original did (docs/tutorial.md has the counts).
// No sleep is involved; --work 2000 gives the literal loop.
const DefaultWork = 8000
