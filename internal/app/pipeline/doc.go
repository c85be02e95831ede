// Package pipeline is the demo program: the Go twin of a Python
// multiprocessing pipeline that deadlocks when its pool is left without
// closing it (see docs/tutorial.md).
//
//	err := pipeline.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
//
// # The processes
//
// Main starts a writer process and a pool of worker processes, each the same
// binary run again with $LOCKWATCH_ROLE set to "writer" or "worker", in the
// same lockwatch run ($LOCKWATCH_DIR). Every process runs the probe.
//
//   - The queue is one pipe shared by every process, carrying frames (see
//     appendFrame). Each process writes through a Queue: Put buffers, and a
//     feeder goroutine writes each frame under the cross-process lock
//     "queue.wlock", held across the whole frame, as Python's
//     multiprocessing.Queue does.
//   - The pool hands out chunks of items on a task pipe; a worker runs step 1
//     on each item, puts the result on the queue and acknowledges the chunk.
//     Map returns when every chunk is acknowledged, before the workers'
//     feeders have written everything.
//   - Leaving the pool kills the workers (SIGKILL), as leaving Python's
//     `with Pool()` block does. A worker killed while its feeder holds the
//     lock leaves it held: main's Put of the stop sentinel never gets
//     written, and main waits for the writer for ever. A worker killed with
//     frames still buffered loses them. With --fix, main closes and joins the
//     pool first, so each worker flushes and exits.
//   - The writer reads frames until the stop sentinel and counts them; main
//     prints "produced N delivered M".
//
// # In-process locks
//
// The Queue's buffer is guarded by lockwatch's drop-in mutex, named
// "queue.buf", so that lockwatch shows it whenever a goroutine holds it or
// waits for it. In the hang it never does, as in the Python original: the
// feeder lets go of the buffer before it waits for the write lock, and
// Put never blocks. (A dump of every thread of the hung Python program
// shows the feeder waiting for the write lock and the main thread in
// join, nothing else; docs/tutorial.md.) The Pool keeps no state that a
// mutex guards: its workers' exits are channels, its Close a Once.
//
// # Torn frames
//
// A frame larger than PIPE_BUF may be cut by a SIGKILL in the middle of its
// write. The writer cannot resynchronise, since frames carry no markers
// it could search for: if the pipe ends inside a frame it reports a torn
// frame, and if a header is not one (another writer went on after the cut)
// it reports lost sync; either way it stops reading and reports the messages
// it counted. Under lockreg's default policy no one writes after a holder
// died, so the usual sign of a cut frame is the hang itself.
//
// # No process left behind
//
// Children are started with Pdeathsig SIGKILL from one goroutine locked to
// its thread for the whole run (see spawner), so they die with main however
// main dies; when ctx ends (SIGINT, SIGTERM), main kills them and waits for
// them. Children stay in main's process group, so a signal to the group
// reaches every process.
package pipeline
