package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/liveness"
	"github.com/lockwatch/lockwatch/internal/proc"
	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/probe"
)

// runFlags are run's own flags.
type runFlags struct {
	keep       bool // keep a cleanly ended run's directory
	onDeadlock string
	reportPath string
	interval   time.Duration
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
--on-deadlock=kill it kills every process of the run. SIGINT and SIGTERM are
forwarded to PROGRAM's process group.

Exit status: PROGRAM's own when it ends by itself with no deadlock found
(128+N when a signal N ended it), 3 when a deadlock was found, 2 when PROGRAM
cannot be started or the report cannot be written.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.onDeadlock != "wait" && f.onDeadlock != "kill" {
				return usagef("--on-deadlock=%q: want wait or kill", f.onDeadlock)
			}
			return a.run(cmd.Context(), f, args)
		},
	}
	c.Flags().StringVar(&f.onDeadlock, "on-deadlock", "wait", "wait: keep the program alive to attach to; kill: end every process of the run")
	c.Flags().StringVar(&f.reportPath, "report", "", "write the report to this file instead of stderr")
	c.Flags().DurationVar(&f.interval, "interval", 250*time.Millisecond, "how often to re-read the run when no process died")
	c.Flags().BoolVar(&f.keep, "keep", false, "keep the run directory even when the run ended cleanly")
	_ = c.RegisterFlagCompletionFunc("on-deadlock", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"wait", "kill"}, cobra.ShellCompDirectiveNoFileComp
	})
	c.Flags().SetInterspersed(false)
	return c
}

func (a *app) run(ctx context.Context, f runFlags, args []string) error {
	root, err := lockreg.DefaultRoot()
	if err != nil {
		return usagef("%v", err)
	}
	if root.Fallback != "" {
		fmt.Fprintf(a.stderr, "lockwatch: %s\n", oneLine(root.Fallback))
	}
	dir, err := lockreg.NewRunDir(root.Dir)
	if err != nil {
		return usagef("cannot make a run directory under %s: %v", root.Dir, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), probe.EnvDir+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, a.stdout, a.stderr
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
		return usagef("cannot start %s: %v", args[0], err)
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

	status := &statusLine{w: a.stderr, on: isTerminal(a.stderr), started: started}
	var found *report.Report
	var shown, lastErr string
	for {
		select {
		case <-exited:
			status.clear()
			return a.ended(ctx, dir, reap(), found, f)
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
		case err != nil:
			// Said once per distinct error, not every interval.
			if msg := oneLine(readError(dir, err).Error()); msg != lastErr {
				lastErr = msg
				status.clear()
				fmt.Fprintf(a.stderr, "lockwatch: %s\n", report.Escape(msg))
			}
		default:
			for _, p := range r.Processes {
				if p.Alive {
					w.Add(procID(p.PID, p.Start))
				}
			}
			if r.Deadlock() {
				if fp := findingsPrint(r); fp != shown {
					shown = fp
					found = r
					status.clear()
					if err := a.emit(r, f.reportPath); err != nil {
						fmt.Fprintf(a.stderr, "lockwatch: %s\n", report.Escape(oneLine(err.Error())))
					}
					if f.onDeadlock == "kill" {
						a.killRun(run, r, pgid)
						<-exited
						reap()
						return exitCode(ExitDeadlock)
					}
					fmt.Fprintf(a.stderr, "lockwatch: deadlock: the program is kept alive; 'lockwatch attach %s' reports again, Ctrl-C ends it\n", report.Escape(dir))
				}
			}
			status.draw(r)
		}
		if _, err := w.Wait(f.interval); err != nil {
			return usagef("%v", err)
		}
	}
}

// ended is the end of run once PROGRAM has exited.
func (a *app) ended(ctx context.Context, dir string, waitErr error, found *report.Report, f runFlags) error {
	if found != nil {
		return exitCode(ExitDeadlock)
	}
	var lost error // the one document a script waits for, not written
	if a.output == "json" {
		// Scripts always get one document: the run as it ended.
		if r, err := report.Diagnose(ctx, a.sources(dir, false), a.opts); err == nil {
			if err := a.emit(r, f.reportPath); err != nil {
				lost = usagef("cannot write the report: %v", err)
			}
		}
	}
	if !f.keep {
		// A run that ended cleanly (every process closed its registry, no
		// lock held) holds nothing to diagnose; its directory lives in
		// memory (/dev/shm). Anything else is kept for attach.
		if waitErr == nil {
			lockreg.RemoveIfClean(dir)
		}
		os.Remove(dir) // succeeds only if nothing ever joined the run
	}
	if lost != nil {
		return lost
	}
	var xe *exec.ExitError
	if errors.As(waitErr, &xe) {
		if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitCode(128 + int(ws.Signal()))
		}
		return exitCode(xe.ExitCode())
	}
	if waitErr != nil {
		return &exitError{code: ExitFailed, err: waitErr}
	}
	return nil
}

// emit writes the report to path, or to stderr.
func (a *app) emit(r *report.Report, path string) error {
	if path == "" {
		return a.print(a.stderr, r, false)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	return errors.Join(a.print(fh, r, false), fh.Close())
}

// findingsPrint tells reports with the same findings apart from new ones.
func findingsPrint(r *report.Report) string {
	var b strings.Builder
	for i := range r.Findings {
		b.WriteString(r.Findings[i].Key())
		b.WriteByte(';')
	}
	return b.String()
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
				fmt.Fprintf(a.stderr, "lockwatch: pid %d was not killed: %s\n", p.PID, report.Escape(oneLine(err.Error())))
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

// statusLine is run's one live line on a terminal's stderr.
type statusLine struct {
	w       io.Writer
	on      bool
	started time.Time
	drawn   bool
}

func (s *statusLine) draw(r *report.Report) {
	if !s.on {
		return
	}
	alive, held := 0, 0
	for _, p := range r.Processes {
		if p.Alive {
			alive++
		}
	}
	for _, l := range r.Locks {
		if l.Holder != nil {
			held++
		}
	}
	fmt.Fprintf(s.w, "\r\x1b[Klockwatch: %d processes, %d locks held, %d waiting, %s",
		alive, held, len(r.Waiters), time.Since(s.started).Round(100*time.Millisecond))
	s.drawn = true
}

func (s *statusLine) clear() {
	if s.drawn {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.drawn = false
	}
}
