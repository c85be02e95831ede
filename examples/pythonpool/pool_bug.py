"""The Python deadlock that lockwatch's demo (cmd/demo) reproduces in Go.

A pool of worker processes computes a result for each item and puts it on a
multiprocessing.Queue that one writer process reads until "STOP". The main
process leaves the pool's `with` block as soon as map() has returned, which
terminates the workers: a worker whose queue feeder thread is writing at that
moment dies holding the queue's write lock (a semaphore shared by every
process), and the main process's own put("STOP") then waits for that lock for
ever. A worker killed with results still in its queue's buffer loses them.

    python3 pool_bug.py            # hangs, loses messages, or delivers all 20000
    python3 pool_bug.py fix        # close() and join() the pool inside the block
    python3 pool_bug.py --dump 30  # after 30 s without the writer's end, dump
                                   # every thread of the main process to stderr

Its last line is "writer got N of 20000". It exits 0 when N is 20000, 1 when
messages were lost; a hung run never ends by itself (Ctrl-C, or timeout(1)).
"""

import faulthandler
import multiprocessing as mp
import sys

ITEMS = 20_000
PAYLOAD = 2_000  # bytes per result: well under the pipe's atomic write size


def compute(item):
    """Step 1: 2,000 multiply-adds per item, then the result goes on the queue."""
    acc = 0
    for k in range(2_000):
        acc += item * k
    results.put((item, acc, "r" * PAYLOAD))


def join_pool(q):
    """Runs in each worker: the queue reaches the workers as a global."""
    global results
    results = q


def count(q):
    """Step 2, the writer process: read until "STOP", say how many came."""
    got = 0
    while q.get() != "STOP":
        got += 1
    print(f"writer got {got} of {ITEMS}", flush=True)
    sys.exit(0 if got == ITEMS else 1)


def main(argv):
    fix = "fix" in argv
    if "--dump" in argv:
        # Where every thread of this process waits, once it has hung.
        faulthandler.dump_traceback_later(float(argv[argv.index("--dump") + 1]), exit=False)
    q = mp.Queue()
    writer = mp.Process(target=count, args=(q,))
    writer.start()
    with mp.Pool(2, initializer=join_pool, initargs=(q,)) as pool:
        pool.map(compute, range(ITEMS))
        if fix:
            pool.close()  # no more tasks: each worker flushes its queue and exits
            pool.join()
    # Leaving the block called pool.terminate(): without the fix, the
    # workers were killed, maybe with the queue's write lock held.
    q.put("STOP")
    writer.join()
    faulthandler.cancel_dump_traceback_later()
    return writer.exitcode


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main(sys.argv[1:]))
