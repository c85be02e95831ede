// Package etcddemo is the demo pipeline with its lock in etcd: a pool of
// worker processes writes frames to one pipe under the cross-process lock
// "queue.wlock", and leaving the pool kills the workers while one of them
// holds it, as the shared-memory demo's --hang does (internal/app/pipeline).
//
//	err := etcddemo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
//
// The writer is held back and the pipe shrunk to one page, so the first
// worker to take the lock blocks in write(2) holding it, for certain. Main
// then kills the pool, lets the writer read, and puts the stop frame: its
// Lock waits for ever (the Stall policy: the dead worker's lease expires,
// and the lock stays with the dead holder's record), and so does main's wait
// for the writer.
package etcddemo

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/internal/etcdcli"
)

const (
	envRole = "LOCKWATCH_ROLE"
	lock    = "queue.wlock"
	stop    = "STOP"
)

// ExitError carries the status to exit with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d: %v", e.Code, e.Err) }

func (e *ExitError) Unwrap() error { return e.Err }

type config struct {
	backend   string
	endpoints string
	workers   int
	payload   int
	ttl       time.Duration
}

// Main runs the demo; children (LOCKWATCH_ROLE worker or writer) run their
// part.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo-etcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.backend, "backend", "etcd", "lock `backend`: etcd (the shared-memory demo is bin/demo)")
	fs.StringVar(&c.endpoints, "etcd", os.Getenv(etcdcli.EnvEndpoints), "etcd client `endpoints`; none: start an embedded etcd in a temporary directory")
	fs.IntVar(&c.workers, "workers", 2, "worker `processes` in the pool")
	fs.IntVar(&c.payload, "payload", 8000, "`bytes` per frame (more than a page, so a write blocks holding the lock)")
	fs.DurationVar(&c.ttl, "ttl", 3*time.Second, "lease `TTL` of each process")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &ExitError{Code: 2, Err: err}
	}
	var bad string
	switch {
	case c.backend != "etcd":
		bad = fmt.Sprintf("--backend %q: this binary runs the etcd backend; the shared-memory demo is bin/demo", c.backend)
	case fs.NArg() > 0:
		bad = fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case c.workers < 1:
		bad = fmt.Sprintf("--workers %d: must be 1 or more", c.workers)
	case c.payload <= 4096 || c.payload > 1<<20:
		bad = fmt.Sprintf("--payload %d: must be more than a page (4096) and at most 1 MiB", c.payload)
	}
	if bad != "" {
		fmt.Fprintln(stderr, "demo-etcd:", bad)
		return &ExitError{Code: 2, Err: errors.New(bad)}
	}
	switch os.Getenv(envRole) {
	case "worker":
		return worker(ctx, c)
	case "writer":
		return writer(stdout)
	}
	return runMain(ctx, c, stdout, stderr)
}

func open(ctx context.Context, c config, role string) (*clientv3.Client, *etcdreg.Registry, error) {
	conn := etcdreg.ConnFromEnv() // the user and TLS files lockwatch run gives
	conn.Endpoints = strings.Split(c.endpoints, ",")
	cli, err := etcdreg.Dial(ctx, conn)
	if err != nil {
		return nil, nil, err
	}
	reg, err := etcdreg.Open(ctx, cli, os.Getenv(etcdcli.EnvRun), etcdreg.Options{Role: role, TTL: c.ttl})
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, reg, nil
}

func frame(body []byte) []byte {
	f := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(f, body...)
}

// worker writes frames to the queue (fd 3) under the lock, for ever: the
// pool is killed before it ends.
func worker(ctx context.Context, c config) error {
	cli, reg, err := open(ctx, c, "worker")
	if err != nil {
		return err
	}
	defer cli.Close()
	defer reg.Close()
	q := os.NewFile(3, "queue")
	mu, err := reg.Mutex(lock)
	if err != nil {
		return err
	}
	body := make([]byte, c.payload)
	for {
		if err := send(ctx, mu, q, body); err != nil {
			return err
		}
	}
}

// send writes one frame under the lock: the whole frame, as
// multiprocessing.Queue's feeder does.
func send(ctx context.Context, mu *etcdreg.Mutex, q io.Writer, body []byte) error {
	if err := mu.Lock(ctx); err != nil {
		return err
	}
	_, werr := q.Write(frame(body))
	if err := mu.Unlock(ctx); err != nil {
		return err
	}
	return werr
}

// writer waits for a byte on fd 4 (held back), then reads frames from the
// queue (fd 3) until the stop frame and prints how many it got.
func writer(stdout io.Writer) error {
	var b [1]byte
	if _, err := os.NewFile(4, "go").Read(b[:]); err != nil {
		return err
	}
	q := os.NewFile(3, "queue")
	n := 0
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(q, hdr[:]); err != nil {
			return fmt.Errorf("writer: %d frames, then %w", n, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(q, body); err != nil {
			return fmt.Errorf("writer: %d frames, then a torn frame: %w", n, err)
		}
		if string(body) == stop {
			fmt.Fprintf(stdout, "writer: %d frames, then STOP\n", n)
			return nil
		}
		n++
	}
}

func runMain(ctx context.Context, c config, stdout, stderr io.Writer) error {
	if c.endpoints == "" {
		dir, err := os.MkdirTemp("", "demo-etcd-")
		if err != nil {
			return &ExitError{Code: 2, Err: err}
		}
		defer os.RemoveAll(dir)
		srv, err := embedded.Start(dir)
		if err != nil {
			fmt.Fprintln(stderr, "demo-etcd:", err)
			return &ExitError{Code: 2, Err: err}
		}
		defer srv.Stop()
		c.endpoints = strings.Join(srv.Endpoints(), ",")
		fmt.Fprintf(stderr, "demo-etcd: embedded etcd at %s\n", c.endpoints)
	}
	if os.Getenv(etcdcli.EnvRun) == "" {
		os.Setenv(etcdcli.EnvRun, fmt.Sprintf("demo-%d", os.Getpid()))
	}
	cli, reg, err := open(ctx, c, "main")
	if err != nil {
		fmt.Fprintln(stderr, "demo-etcd:", err)
		return &ExitError{Code: 2, Err: err}
	}
	defer cli.Close()
	defer reg.Close()
	fmt.Fprintf(stderr, "demo-etcd: run %s at %s\n", reg.Run(), c.endpoints)

	qr, qw, err := os.Pipe()
	if err != nil {
		return err
	}
	if _, err := unix.FcntlInt(qw.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		return fmt.Errorf("demo-etcd: shrink the queue pipe: %w", err)
	}
	gr, gw, err := os.Pipe()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := func(role string) []string {
		return append(os.Environ(), envRole+"="+role, etcdcli.EnvEndpoints+"="+c.endpoints, etcdcli.EnvRun+"="+reg.Run())
	}
	start := func(role string, files ...*os.File) (*exec.Cmd, error) {
		cmd := exec.Command(exe, "--ttl", c.ttl.String(), "--payload", fmt.Sprint(c.payload))
		cmd.Env = env(role)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.ExtraFiles = files
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd, cmd.Start()
	}
	wr, err := start("writer", qr, gr)
	if err != nil {
		return err
	}
	defer func() { _ = wr.Process.Kill(); _ = wr.Wait() }()
	var pool []*exec.Cmd
	for range c.workers {
		w, err := start("worker", qw)
		if err != nil {
			return err
		}
		pool = append(pool, w)
	}
	qr.Close()
	gr.Close()

	// Wait until a worker holds the lock: with no reader and a one-page
	// pipe, it is blocked in write(2) holding it.
	holder, err := awaitHolder(ctx, cli, reg.Run())
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "demo-etcd: worker %d holds %s; terminating the pool\n", holder, lock)
	for _, w := range pool {
		_ = w.Process.Signal(syscall.SIGKILL)
		_ = w.Wait()
	}
	if _, err := gw.Write([]byte{1}); err != nil { // the writer may read now
		return err
	}
	mu, err := reg.Mutex(lock)
	if err != nil {
		return err
	}
	if err := send(ctx, mu, qw, []byte(stop)); err != nil {
		fmt.Fprintln(stderr, "demo-etcd: put STOP:", err)
		return &ExitError{Code: 1, Err: err}
	}
	qw.Close()
	if err := wr.Wait(); err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	return nil
}

// awaitHolder watches the lock's holder record until a worker holds it, and
// returns its pid.
func awaitHolder(ctx context.Context, cli *clientv3.Client, run string) (int, error) {
	for {
		s, err := etcdreg.Read(ctx, cli, run)
		if err != nil {
			return 0, err
		}
		for _, l := range s.Locks {
			if o := l.Owner(); l.Name == lock && o != nil && o.Record != nil {
				if p, ok := s.Process(o.Record.ID); ok && p.Role == "worker" {
					return o.Record.ID.PID, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
