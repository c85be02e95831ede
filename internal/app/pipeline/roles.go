package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lockwatch/lockwatch/probe"
)

// LockName is the queue's cross-process write lock in the run's registry.
const LockName = "queue.wlock"

// The descriptors a child inherits (exec.Cmd.ExtraFiles): a worker gets the
// queue's write end, the task pipe's read end and the acknowledgement pipe's
// write end; the writer gets the queue's read end and the result pipe's
// write end.
const (
	fdQueue = 3
	fdTasks = 4
	fdAcks  = 5

	fdResult = 4
)

// inherited returns the descriptor fd a child got from main, checking that
// it is a pipe, so that a worker or writer started by hand says what is wrong.
func inherited(fd int, name, role string) (*os.File, error) {
	f := os.NewFile(uintptr(fd), name)
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("%s=%s, but descriptor %d (%s) is not an inherited pipe; the %s role is started by demo itself, do not set %s",
			probe.EnvRole, role, fd, name, role, probe.EnvRole)
	}
	return f, nil
}

// step1 is the CPU-bound step of the pipeline, as in the Python original:
// for i in range(2000): s += i*x, with work iterations.
func step1(x, work int) int {
	s := 0
	for i := range work {
		s += i * x
		s ^= s >> 7 // keeps the compiler from closing the sum into a formula
	}
	return s
}

// runWorker is a pool worker: it takes tasks until the task pipe ends,
// processes each item and puts its result on the queue, acknowledges each
// task, then flushes its queue and exits. Killed, it flushes nothing.
func runWorker(ctx context.Context, payload, work int) (err error) {
	agent, err := probe.Start(probe.Options{Role: "worker"})
	if err != nil {
		return err
	}
	mu, err := agent.Registry().Mutex(LockName)
	if err != nil {
		return errors.Join(err, agent.Close())
	}
	var files [3]*os.File
	for i, name := range []string{"queue", "tasks", "acks"} {
		if files[i], err = inherited(fdQueue+i, name, "worker"); err != nil {
			return errors.Join(err, agent.Close())
		}
	}
	q := newQueue(ctx, files[0], mu)
	defer func() {
		// As a Python worker's exit joins its queue's feeder thread.
		q.Close()
		err = errors.Join(err, q.Wait(), agent.Close())
	}()

	body := make([]byte, 16+payload)
	for i := 16; i < len(body); i++ {
		body[i] = 'x'
	}
	for {
		first, count, err := getRecord(files[1])
		if errors.Is(err, io.EOF) {
			return nil // the pool was closed
		}
		if err != nil {
			return fmt.Errorf("read task: %w", err)
		}
		for x := first; x < first+count; x++ {
			binary.LittleEndian.PutUint64(body, uint64(x))
			binary.LittleEndian.PutUint64(body[8:], uint64(step1(x, work)))
			if err := q.Put(KindMessage, body); err != nil {
				return err
			}
		}
		if err := putRecord(files[2], first, count); err != nil {
			return fmt.Errorf("acknowledge task: %w", err)
		}
	}
}

// A writerResult is what the writer tells main, as one JSON object on the
// result pipe, when it stops reading.
type writerResult struct {
	Delivered int    `json:"delivered"`     // messages read whole
	Stopped   bool   `json:"stopped"`       // it read the stop sentinel
	Err       string `json:"err,omitempty"` // why it stopped otherwise
}

// runWriter is step 2: it reads the queue until the stop sentinel and counts
// the messages. On a torn frame or lost sync it stops reading at once,
// reports the messages it counted and the error, and exits: it cannot find
// the next frame, and draining the pipe would only hide how many messages
// were lost. Writers still writing then fail with EPIPE.
func runWriter(stdout io.Writer) (err error) {
	agent, err := probe.Start(probe.Options{Role: "writer"})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, agent.Close()) }()
	qr, err := inherited(fdQueue, "queue", "writer")
	if err != nil {
		return err
	}
	res, err := inherited(fdResult, "result", "writer")
	if err != nil {
		return err
	}
	defer res.Close()

	var r writerResult
	fr := newFrameReader(qr)
	var body []byte
	for {
		var k Kind
		k, body, err = fr.next(body)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the queue ended before the stop sentinel")
			}
			r.Err = err.Error()
			break
		}
		if k == KindStop {
			r.Stopped = true
			break
		}
		r.Delivered++
	}
	fmt.Fprintln(stdout, "writer got", r.Delivered)
	return json.NewEncoder(res).Encode(r)
}
