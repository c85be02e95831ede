package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/lockwatch/lockwatch/sync"
)

// Tasks and acknowledgements travel as records of two little-endian uint64s,
// the first item of a chunk and the number of items in it. Every record is
// written with one write of 16 bytes, which a pipe makes atomic (it is below
// PIPE_BUF), and read with one read of 16 bytes; so the pipes hold whole
// records only, and any number of processes can share one end without a
// lock. (Python's Pool guards its task and result queues with locks too; the
// demo leaves them out, so that the one lock that matters is the one that
// shows.)
const recordSize = 16

func putRecord(w io.Writer, first, count int) error {
	var b [recordSize]byte
	binary.LittleEndian.PutUint64(b[:], uint64(first))
	binary.LittleEndian.PutUint64(b[8:], uint64(count))
	_, err := w.Write(b[:])
	return err
}

func getRecord(r io.Reader) (first, count int, err error) {
	var b [recordSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, 0, err
	}
	return int(binary.LittleEndian.Uint64(b[:])), int(binary.LittleEndian.Uint64(b[8:])), nil
}

// chunkSize is how many items go into one task, as Pool.map computes it:
// about four chunks per worker.
func chunkSize(items, workers int) int {
	c, extra := items/(4*workers), items%(4*workers)
	if extra != 0 {
		c++
	}
	return max(c, 1)
}

// A Pool is a pool of worker processes, each the demo binary run again with
// the role "worker", like Python's multiprocessing.Pool. Workers take tasks
// from one shared pipe, first come, first served, and acknowledge each task
// on another once its items are processed: processed, not delivered, since
// a worker's results wait in its queue's feeder.
//
// A Pool's methods are called from one goroutine, except kill; its zero
// value is not usable.
type Pool struct {
	workers []*worker
	tasks   *os.File // write end of the task pipe
	acks    *os.File // read end of the acknowledgement pipe

	closeOnce sync.Once
}

type worker struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the worker is reaped
	err    error         // cmd.Wait's error; read after exited
}

// startPool starts n workers. qw is the queue's write end, which every
// worker inherits; args and env are theirs.
func startPool(sp *spawner, n int, exe string, args, env []string, qw *os.File, stderr io.Writer) (_ *Pool, err error) {
	tr, tw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ar, aw, err := os.Pipe()
	if err != nil {
		tr.Close()
		tw.Close()
		return nil, err
	}
	p := &Pool{tasks: tw, acks: ar}
	defer func() {
		// The workers have their copies: main keeps only its ends, so that
		// the workers see the end of the tasks when main closes tw, and main
		// sees the end of the acks when every worker is gone.
		tr.Close()
		aw.Close()
		if err != nil {
			p.Terminate()
		}
	}()
	for range n {
		cmd := exec.Command(exe, args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = stderr, stderr
		cmd.ExtraFiles = []*os.File{qw, tr, aw} // fds 3, 4, 5: see runWorker
		if err := sp.start(cmd); err != nil {
			return p, fmt.Errorf("start worker: %w", err)
		}
		w := &worker{cmd: cmd, exited: make(chan struct{})}
		go func() {
			defer close(w.exited)
			w.err = cmd.Wait()
		}()
		p.workers = append(p.workers, w)
	}
	return p, nil
}

// pids returns the workers' process ids.
func (p *Pool) pids() []int {
	pids := make([]int, len(p.workers))
	for i, w := range p.workers {
		pids[i] = w.cmd.Process.Pid
	}
	return pids
}

// Map hands out items 0 to items-1 in chunks and returns once every chunk is
// acknowledged: once step 1 has returned for every item, which is before the
// workers' feeders have written every result. It returns the number of items
// processed. If ctx ends first, the workers are killed.
func (p *Pool) Map(ctx context.Context, items int) (int, error) {
	stop := context.AfterFunc(ctx, p.kill)
	defer stop()

	chunk := chunkSize(items, len(p.workers))
	fed := make(chan error, 1)
	go func() {
		// A goroutine, as the pipe holds fewer tasks than there may be.
		for first := 0; first < items; first += chunk {
			if err := putRecord(p.tasks, first, min(chunk, items-first)); err != nil {
				fed <- fmt.Errorf("pool: hand out tasks: %w", err)
				return
			}
		}
		fed <- nil
	}()
	done := 0
	for done < items {
		_, n, err := getRecord(p.acks)
		if err != nil {
			p.kill() // so that the feeding goroutine fails, if it still writes
			<-fed
			if ctx.Err() != nil {
				return done, ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return done, fmt.Errorf("pool: every worker exited with %d of %d items done", done, items)
			}
			return done, fmt.Errorf("pool: read acknowledgements: %w", err)
		}
		done += n
	}
	return done, <-fed
}

// Close says there are no more tasks: each worker, at the end of the tasks,
// flushes its queue and exits.
func (p *Pool) Close() error {
	var err error
	p.closeOnce.Do(func() { err = p.tasks.Close() })
	return err
}

// Join waits for every worker to exit, after Close. It reports workers that
// failed.
func (p *Pool) Join(ctx context.Context) error {
	var errs []error
	for _, w := range p.workers {
		select {
		case <-w.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
		if w.err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, w.err))
		}
	}
	return errors.Join(errs...)
}

// kill sends SIGKILL to every worker that has not been reaped. It is safe
// for concurrent use.
func (p *Pool) kill() { p.signal(syscall.SIGKILL) }

func (p *Pool) signal(sig syscall.Signal) {
	for _, w := range p.workers {
		select {
		case <-w.exited:
		default:
			// An error means the worker is reaped already.
			_ = w.cmd.Process.Signal(sig)
		}
	}
}

// Terminate kills every worker with SIGKILL, with no chance to flush its
// queue or release a lock, as leaving Python's `with Pool(...)` block does,
// and waits until they are reaped. After Close and Join, it has nothing left
// to do.
func (p *Pool) Terminate() {
	p.kill()
	for _, w := range p.workers {
		<-w.exited
	}
	p.Close()
	p.acks.Close()
}
