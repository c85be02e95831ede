package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/internal/diag/safeout"
	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/internal/source/dropinsrc"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// runFlags are run's own flags.
type runFlags struct {
	keep       bool // keep a cleanly ended run's directory
	onDeadlock string
	reportPath string
	interval   time.Duration
	failOn     string // "lock-order": a lock-order finding fails the run
}

func (a *app) runCmd() *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run [flags] -- PROGRAM [ARG...]",
		Short: "Run a program under watch and report a deadlock when it happens",
		Long: `run makes a fresh run directory, starts PROGRAM in its own process group with
LOCKWATCH_DIR naming it (its children inherit it), passes its output through and
watches the run: on a terminal, one status line on stderr. When a deadlock is
confirmed it prints the report on stderr (or into --report); then, with
--on-deadlock=wait it keeps the program alive so you can attach, with
--on-deadlock=kill it kills every process of the run, when the deadlock is
proved: a dead holder or a cycle (a stuck holder, which holds long while others
wait, is reported but never killed). SIGINT and SIGTERM are forwarded to
PROGRAM's process group. A process whose goroutines are all blocked dies as
it would without lockwatch: its probe stands down so that Go's runtime ends
it ("all goroutines are asleep"), and PROGRAM's status passes through.

Within a second, run says if PROGRAM (or a process it started) has not
joined the run: lockwatch sees only the locks of processes that run its
probe. On a terminal the status line stays on the bottom row, under
PROGRAM's output. When PROGRAM ends with no deadlock, one line says who
joined the run; with -o json or --report, the final report is written too.

Exit status: PROGRAM's own when it ends by itself with no deadlock found
(128+N when a signal N ended it). lockwatch's own statuses are those of
timeout(1), which programs seldom use: 124 a deadlock was found, 125
lockwatch failed (usage, environment), 126 PROGRAM cannot be run, 127
PROGRAM was not found; with --fail-on=lock-order, 4 when PROGRAM exited 0
but locks were taken in both orders (a lock-order finding, whose report is
printed at the end of any run that has one).`,
		Example: `  lockwatch run -- ./myprogram --workers 8
  lockwatch run --on-deadlock=kill -o json --report report.json -- go test ./...
  lockwatch run --keep -- bin/demo --hang     # keep the run for attach afterwards`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("run: wants a PROGRAM to run: lockwatch run [flags] -- PROGRAM [ARG...]; see 'lockwatch run --help'")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.onDeadlock != "wait" && f.onDeadlock != "kill" {
				return usagef("--on-deadlock=%q: want wait or kill", f.onDeadlock)
			}
			if a.output == "dot" && f.reportPath == "" {
				return usagef("run -o dot writes the wait-for graph to --report FILE, not among PROGRAM's output: give --report FILE")
			}
			if f.failOn != "" && f.failOn != string(report.LockOrder) {
				return usagef("--fail-on=%q: want lock-order (or nothing)", f.failOn)
			}
			return a.run(cmd.Context(), f, args)
		},
	}
	c.Flags().StringVar(&f.onDeadlock, "on-deadlock", "wait", "wait: keep the program alive to attach to; kill: end every process of the run")
	c.Flags().StringVar(&f.reportPath, "report", "", "write the report to this file instead of stderr")
	c.Flags().DurationVar(&f.interval, "interval", 250*time.Millisecond, "how often to re-read the run when no process died")
	c.Flags().BoolVar(&f.keep, "keep", false, "keep the run directory even when the run ended cleanly")
	c.Flags().StringVar(&f.failOn, "fail-on", "", "lock-order: exit 4 when PROGRAM succeeded but took locks in both orders (for CI)")
	_ = c.RegisterFlagCompletionFunc("on-deadlock", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"wait", "kill"}, cobra.ShellCompDirectiveNoFileComp
	})
	c.Flags().SetInterspersed(false)
	return c
}

func (a *app) run(ctx context.Context, f runFlags, args []string) error {
	if err := checkEnvRoot(); err != nil {
		return err
	}
	root, err := arena.DefaultRoot()
	if err != nil {
		return usagef("%v", err)
	}
	if root.Fallback != "" {
		fmt.Fprintf(a.msgs(), "lockwatch: %s\n", oneLine(root.Fallback))
	}
	dir, err := arena.NewRunDir(root.Dir)
	if err != nil {
		return usagef("cannot make a run directory under %s: %v", root.Dir, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), probe.EnvDir+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, safeout.Raw(a.stdout), safeout.Raw(a.stderr) // PROGRAM's own
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tty, onTTY := a.stdin.(*os.File)
	onTTY = onTTY && isTerminal(tty)
	if onTTY {
		// PROGRAM gets its own process group (so that the run can be
		// killed as one) and the terminal with it: in the foreground it
		// may read the terminal, and Ctrl-C, Ctrl-\ and Ctrl-Z reach it
		// from the terminal itself. lockwatch, now in the background,
		// ignores SIGTTOU to write its status line and to take the
		// terminal back when PROGRAM ends.
		signal.Ignore(syscall.SIGTTOU)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: int(tty.Fd())}
	}
	if err := cmd.Start(); err != nil {
		os.Remove(dir) // nothing joined it
		return startError(args[0], err)
	}
	if onTTY {
		defer unix.IoctlSetPointerInt(int(tty.Fd()), unix.TIOCSPGRP, syscall.Getpgrp())
	}
	pgid := cmd.Process.Pid
	started := time.Now()

	w, err := liveness.NewWatcher()
	if err != nil {
		syscall.Kill(-pgid, syscall.SIGKILL)
		cmd.Wait()
		return usagef("%v", err)
	}
	defer w.Close()
	// PROGRAM is reaped only once nothing signals its process group any
	// more: until then (alive, or a zombie) its pid, which is the group's
	// id, cannot be reused, so the group signalled is the one made here.
	// The goroutine waits for the exit without reaping (WNOWAIT).
	exited := make(chan struct{})
	go func() {
		waitExit(pgid)
		close(exited)
		w.Wake()
	}()
	sigs := make(chan os.Signal, 2)
	// Forwarded to PROGRAM's group, so that lockwatch never dies leaving
	// the run behind: a closed terminal (SIGHUP) and Ctrl-\ (SIGQUIT) too.
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	fwdDone, fwdStopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(fwdStopped)
		for {
			select {
			case s := <-sigs:
				syscall.Kill(-pgid, s.(syscall.Signal))
			case <-fwdDone:
				return
			}
		}
	}()
	// reap stops the forwarding, then reaps PROGRAM; called once, after
	// exited.
	reap := func() error {
		close(fwdDone)
		<-fwdStopped
		return cmd.Wait()
	}
	defer func() {
		select {
		case <-fwdDone:
		default:
			close(fwdDone) // an early return: PROGRAM is left to run
		}
	}()
	var run *liveness.Run // the arena's identity, once PROGRAM made it

	status := newStatusLine(a.stderr, started)
	defer status.teardown()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	joins := newJoinCheck(a.msgs(), pgid, args[0])
	var found *report.Report
	var settle settler
	var lastErr string
	sleeps := newSleepWatch()
	var seen runSeen
	var swept time.Time
	for {
		select {
		case <-exited:
			status.teardown()
			return a.ended(ctx, dir, reap(), found, seen, f)
		case <-winch:
			status.resize()
		default:
		}
		if run == nil {
			run, _ = liveness.NewRun(dir) // nil until the arena exists
		}
		src := a.sources(dir, true)
		src.Host = liveness.System{Run: run}
		r, err := report.Diagnose(ctx, src, a.opts)
		switch {
		case err != nil && errors.Is(err, lockreg.ErrNotRun):
			// The program has not opened the run yet (or never will).
			joins.check(nil)
			status.text(fmt.Sprintf("waiting for %s to join the run, %s", args[0], time.Since(started).Round(100*time.Millisecond)))
		case err != nil:
			// Said once per distinct error, not every interval.
			if msg := oneLine(readError(dir, err).Error()); msg != lastErr {
				lastErr = msg
				fmt.Fprintf(a.msgs(), "lockwatch: %s\n", reportcmd.Escape(msg))
			}
		default:
			for _, p := range r.Processes {
				if p.Alive {
					w.Add(procID(p.PID, p.Start))
				}
			}
			joins.check(r.Processes)
			if !r.Deadlock() {
				settle.clear()
			} else if settle.ready(r) {
				// Reported once the findings are the same in two
				// readings in a row, and again when they change.
				again := found != nil
				found = r
				if again {
					fmt.Fprintf(a.msgs(), "lockwatch: the deadlock changed; the report again:\n")
				}
				if err := a.emit(r, f.reportPath); err != nil {
					fmt.Fprintf(a.msgs(), "lockwatch: %s\n", reportcmd.Escape(oneLine(err.Error())))
				}
				if f.onDeadlock == "kill" && killable(r) {
					status.teardown()
					a.killRun(run, r, pgid)
					<-exited
					reap()
					return exitCode(ExitRunDeadlock)
				}
				if f.onDeadlock == "kill" && !again {
					fmt.Fprintf(a.msgs(), "lockwatch: not killed: a holder that holds a lock long while others wait (stuck-holder) is not proved deadlocked (a leader may hold its lock for hours); --on-deadlock=kill acts on dead holders and cycles only\n")
				} else if !again {
					fmt.Fprintf(a.msgs(), "lockwatch: deadlock: lockwatch does not end the program (Go's own deadlock detection still may); 'lockwatch attach %s' reports again, Ctrl-C ends it\n", reportcmd.Escape(filepath.Base(dir)))
				}
			}
			// A process whose goroutines are all blocked is left to Go's
			// own deadlock detection (standdown.go), once the report of
			// a deadlock found is out.
			if !r.Deadlock() || settle.shown == findingsPrint(r) {
				if ids := sleeps.look(ctx, dir, r); len(ids) > 0 && a.standDown(ctx, dir, ids) {
					seen.stoodDown = true
				}
			}
			status.draw(r, found)
		}
		if time.Since(swept) >= dropinSweepEvery {
			// The drop-in arena files of processes gone (the run's
			// table bounds the others' files; these are per process).
			swept = time.Now()
			pids, _, _ := arena.SweepDropinFiles(dir)
			seen.addDropins(pids)
		}
		wait := f.interval
		if d := joins.due(); d > 0 && d < wait {
			wait = d // say within a second that nothing joined
		}
		if _, err := w.Wait(wait); err != nil {
			return usagef("%v", err)
		}
	}
}

// killable reports whether r proves a deadlock that --on-deadlock=kill
// acts on: a holder proved dead, a cycle, a goroutine waiting for a lock
// it holds itself. A stuck holder is a long hold with waiters, which
// leader election does on purpose: reported, never killed.
func killable(r *report.Report) bool {
	for i := range r.Findings {
		switch r.Findings[i].Kind {
		case report.DeadHolder, report.Cycle, report.SelfDeadlock:
			return true
		}
	}
	return false
}

// startError is run's error for a PROGRAM that cannot be started, with the
// codes of timeout(1) and env(1): 127 not found, 126 found but not runnable.
func startError(program string, err error) error {
	code := ExitRunCannotExec
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = ExitRunNotFound
	}
	return &exitError{code: code, err: fmt.Errorf("cannot start %s: %v", program, err)}
}

// runSeen is what run saw of its run as it went.
type runSeen struct {
	// stoodDown: a probe of the run stood down, so PROGRAM ended by itself
	// (Go's runtime ends a program whose goroutines are all blocked), and
	// its status is its own.
	stoodDown bool
	// dropins are the pids of the drop-in arena files seen, which the
	// sweep removes once their processes are gone.
	dropins map[int]bool
}

// dropinSweepEvery is how often run sweeps the drop-in arena files of
// processes gone.
const dropinSweepEvery = time.Second

func (s *runSeen) addDropins(pids []int) {
	if s.dropins == nil {
		s.dropins = map[int]bool{}
	}
	for _, p := range pids {
		s.dropins[p] = true
	}
}

// ended is the end of run once PROGRAM has exited.
func (a *app) ended(ctx context.Context, dir string, waitErr error, found *report.Report, seen runSeen, f runFlags) error {
	if found != nil && seen.stoodDown {
		fmt.Fprintf(a.msgs(), "lockwatch: PROGRAM ended by itself after the deadlock reported above; its exit status is its own\n")
		return programStatus(waitErr)
	}
	if found != nil {
		if killable(found) {
			return exitCode(ExitRunDeadlock)
		}
		// Only stuck holders were reported (the report stands, in
		// --report if given), and the program went on to end by itself:
		// its status is its own.
		fmt.Fprintf(a.msgs(), "lockwatch: PROGRAM ended by itself after the stuck holder reported above; its exit status is its own\n")
		return programStatus(waitErr)
	}
	// The run as it ended: written with -o json (scripts always get one
	// document), --report, or when it has a lock-order finding, and summed
	// up in one line on stderr.
	r, err := report.Diagnose(ctx, a.sources(dir, false), a.opts)
	if err != nil {
		r = &report.Report{Schema: report.Schema, Run: dir, Taken: time.Now(), Findings: []report.Finding{}, Locks: []report.LockRow{},
			Waiters: []report.WaiterRow{}, Processes: []report.ProcRow{}, Events: []report.EventRow{}, Stacks: []report.StackRow{}, Notes: []string{}}
		if !errors.Is(err, lockreg.ErrNotRun) {
			r.Notes = append(r.Notes, "the run could not be read at its end: "+oneLine(readError(dir, err).Error()))
		}
	}
	joined := joinedLine(r.Processes)
	pids, _, _ := arena.SweepDropinFiles(dir)
	seen.addDropins(pids)
	if n := max(len(seen.dropins), dropinsrc.Arenas(dir)); len(r.Processes) == 0 && n > 0 {
		joined = fmt.Sprintf("%s joined the run by importing lockwatch's sync (no probe)", plural(n, "process"))
	}
	r.Notes = append(r.Notes, joined)
	var lost error                     // the one document a script waits for, not written
	ordered := r.Has(report.LockOrder) // locks were taken in both orders
	if a.output == "json" || f.reportPath != "" || ordered {
		if err := a.emit(r, f.reportPath); err != nil {
			lost = usagef("cannot write the report: %v", err)
		}
	}
	if a.output != "json" {
		verdict := "no deadlock found"
		if len(r.Findings) > 0 {
			verdict = fmt.Sprintf("no deadlock found; %s at the end (%s)", plural(len(r.Findings), "finding"), r.Findings[0].Kind)
		}
		fmt.Fprintf(a.msgs(), "lockwatch: %s; %s\n", verdict, joined)
	}
	if !f.keep {
		// A run that ended cleanly (every process closed its registry, no
		// lock held) holds nothing to diagnose; its directory lives in
		// memory (/dev/shm). Anything else is kept for attach.
		if waitErr == nil {
			arena.RemoveIfClean(dir)
		}
		os.Remove(dir) // succeeds only if nothing ever joined the run
	}
	if lost != nil {
		return lost
	}
	if err := programStatus(waitErr); err != nil {
		return err
	}
	if ordered && f.failOn == string(report.LockOrder) {
		return exitCode(ExitLockOrder)
	}
	return nil
}

// programStatus is PROGRAM's own exit status as run's: 128+N for a signal
// N, nil for 0.
func programStatus(waitErr error) error {
	var xe *exec.ExitError
	if errors.As(waitErr, &xe) {
		if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitError{code: 128 + int(ws.Signal()), program: true}
		}
		return &exitError{code: xe.ExitCode(), program: true}
	}
	if waitErr != nil {
		return &exitError{code: ExitFailed, err: waitErr}
	}
	return nil
}

// emit writes the report to path, or to stderr.
func (a *app) emit(r *report.Report, path string) error {
	if path == "" {
		return a.printFit(a.stderr, r, 0)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	return errors.Join(a.print(fh, r, false), fh.Close())
}

// killRun ends every process of the run, and only those: each process of
// the table that is proved a member of the run at the moment of the signal
// (liveness.Run.Kill: it maps the run's arena, checked through a pidfd that
// is then signalled), and PROGRAM's process group, which lockwatch made and
// whose id cannot name another group while PROGRAM is not reaped (the
// caller reaps it only after). A process named by the table that cannot be
// proved the run's is left alone, and said so in one line.
func (a *app) killRun(run *liveness.Run, r *report.Report, pgid int) {
	if run != nil {
		seen := make(map[proc.Identity]bool)
		for _, p := range r.Processes {
			id := procID(p.PID, p.Start)
			if !p.Alive || seen[id] {
				continue // a process that reopened its registry has two rows
			}
			seen[id] = true
			if err := run.Kill(id); err != nil {
				fmt.Fprintf(a.msgs(), "lockwatch: pid %d was not killed: %s\n", p.PID, reportcmd.Escape(oneLine(err.Error())))
			}
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitExit returns when the process pid (a child) has exited, without
// reaping it.
func waitExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
