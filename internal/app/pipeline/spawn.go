package pipeline

import (
	"os/exec"
	"runtime"
	"syscall"
)

// A spawner starts child processes from one goroutine locked to its OS
// thread, for as long as the run lasts.
//
// Every child is started with Pdeathsig SIGKILL, so that no worker or writer
// outlives main, however main ends. The kernel sends that signal when the
// thread that created the child exits, not the process: a child started from
// an ordinary goroutine could be killed early, if the runtime retired that
// thread. The spawner's thread lives until close, and then exits with it
// (the goroutine returns still locked, so the runtime ends the thread): any
// child still alive is then killed, by the kernel.
//
// A spawner is safe for concurrent use; its zero value is not usable.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *spawner) run() {
	runtime.LockOSThread() // never unlocked: see spawner
	defer close(s.done)
	for r := range s.reqs {
		r.reply <- r.cmd.Start()
	}
}

// start starts cmd, which dies with the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	r := spawnReq{cmd: cmd, reply: make(chan error, 1)}
	s.reqs <- r
	return <-r.reply
}

// close ends the spawner's thread, killing every child it started that still
// runs.
func (s *spawner) close() {
	close(s.reqs)
	<-s.done
}
