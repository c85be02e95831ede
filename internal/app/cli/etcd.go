package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lockwatch/lockwatch/internal/diag/safeout"
)

// Runs whose locks live in etcd are read by lockwatch-etcd, a command of its
// own module (etcd/), so that lockwatch itself never links etcd's client
// and server (docs/distributed.md). lockwatch runs it, as git runs its
// subcommands, for
//
//	lockwatch attach etcd://HOST:PORT[,HOST:PORT...]/RUN
//	lockwatch watch  etcd://HOST:PORT/RUN
//	lockwatch run --etcd http://HOST:PORT -- PROGRAM   (a cluster)
//	lockwatch run --backend etcd -- PROGRAM            (an embedded etcd)
//
// It is looked for beside lockwatch's own executable, then on PATH; its
// exit status is lockwatch's.

// etcdAuthFlags are lockwatch-etcd's auth and TLS flags, as etcdctl's:
// attach, watch and run take them for etcd runs and pass them on. The
// password is never a flag: a file, or $ETCDCTL_PASSWORD.
var etcdAuthFlags = []struct{ name, usage string }{
	{"user", "etcd runs: etcd user `NAME`, when etcd's auth is enabled (default $ETCDCTL_USER, which may be NAME:PASSWORD)"},
	{"password-file", "etcd runs: `file` holding the password of --user (default $ETCDCTL_PASSWORD)"},
	{"cacert", "etcd runs: PEM `file` of the CA that signed etcd's certificate; an etcd:// URL's endpoints are then https"},
	{"cert", "etcd runs: PEM `file` of a client certificate"},
	{"key", "etcd runs: PEM `file` of the client certificate's key"},
}

// addEtcdAuthFlags adds etcdAuthFlags to c, and returns those that are
// for lockwatch-etcd alone (to be passed on, and refused elsewhere).
func addEtcdAuthFlags(c *cobra.Command) map[string]bool {
	pass := map[string]bool{}
	for _, f := range etcdAuthFlags {
		c.Flags().String(f.name, "", f.usage)
		pass[f.name] = true
	}
	return pass
}

// etcdTool is the executable that reads etcd runs.
const etcdTool = "lockwatch-etcd"

// etcdURL starts the URL of an etcd run.
const etcdURL = "etcd://"

const etcdHelp = `

An etcd run (locks of github.com/lockwatch/lockwatch/etcd/etcdreg) is named
etcd://HOST:PORT[,HOST:PORT...]/RUN, as 'lockwatch run --etcd' prints it,
or RUN with --etcd ENDPOINTS; lockwatch runs lockwatch-etcd for it (beside
lockwatch, or on PATH; build it with 'make build-etcd').`

const etcdRunHelp = `

With --etcd ENDPOINTS, or --backend etcd (an embedded etcd on a loopback
port, removed at the end), the run's locks live in etcd
(github.com/lockwatch/lockwatch/etcd/etcdreg): PROGRAM gets LOCKWATCH_ETCD
and LOCKWATCH_ETCD_RUN instead of LOCKWATCH_DIR, and lockwatch runs
lockwatch-etcd to watch it (beside lockwatch, or on PATH; build it with
'make build-etcd'), with the same exit statuses.`

// etcdCommands lets attach, watch and run take etcd runs, by handing them
// to lockwatch-etcd.
func (a *app) etcdCommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		switch c.Name() {
		case "attach", "watch":
			var endpoints string
			c.Flags().StringVar(&endpoints, "etcd", "", "etcd client endpoints of an etcd RUN (or name it etcd://HOST:PORT/RUN)")
			auth := addEtcdAuthFlags(c)
			c.Long += etcdHelp
			c.Example += fmt.Sprintf("\n  lockwatch %s etcd://10.0.0.5:2379/run-20261126-000434-9139   # an etcd run", c.Name())
			own := c.RunE
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if !strings.HasPrefix(args[0], etcdURL) && endpoints == "" {
					if err := refuseEtcdAuth(cmd, auth); err != nil {
						return err
					}
					return own(cmd, args)
				}
				fwd, err := a.etcdFlags(cmd, union(auth, "interval", "live-stacks"))
				if err != nil {
					return err
				}
				if endpoints != "" {
					fwd = append(fwd, "--etcd", endpoints)
				}
				return a.execEtcd(cmd, append(append([]string{cmd.Name()}, fwd...), args[0]))
			}
		case "ps", "prune":
			// ps etcd://HOST:PORT lists the runs kept in etcd; prune
			// etcd://HOST:PORT [RUN...] removes the ended ones.
			auth := addEtcdAuthFlags(c)
			c.Long += "\n\nWith etcd://HOST:PORT[,HOST:PORT...], the runs kept in that etcd cluster\n(lockwatch-etcd " + c.Name() + ")."
			c.Example += fmt.Sprintf("\n  lockwatch %s etcd://10.0.0.5:2379   # runs kept in etcd", c.Name())
			ownArgs, own := c.Args, c.RunE
			c.Args = func(cmd *cobra.Command, args []string) error {
				if (len(args) > 0 && strings.HasPrefix(args[0], etcdURL)) || ownArgs == nil {
					return nil
				}
				return ownArgs(cmd, args)
			}
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 || !strings.HasPrefix(args[0], etcdURL) {
					if err := refuseEtcdAuth(cmd, auth); err != nil {
						return err
					}
					return own(cmd, args)
				}
				fwd, err := a.etcdFlags(cmd, auth)
				if err != nil {
					return err
				}
				return a.execEtcd(cmd, append(append([]string{cmd.Name()}, fwd...), args...))
			}
		case "run":
			var endpoints, backend string
			c.Flags().StringVar(&endpoints, "etcd", "", "etcd client endpoints: the run's locks live in this etcd cluster")
			c.Flags().StringVar(&backend, "backend", "lockreg", "where the run's locks live: lockreg (shared memory) or etcd (--etcd's cluster, else an embedded etcd)")
			auth := addEtcdAuthFlags(c)
			c.Long += etcdRunHelp
			c.Example += "\n  lockwatch run --backend etcd -- bin/demo-etcd   # locks in an embedded etcd\n  lockwatch run --etcd http://10.0.0.5:2379 -- ./myprogram"
			own := c.RunE
			c.RunE = func(cmd *cobra.Command, args []string) error {
				switch {
				case backend != "lockreg" && backend != "etcd":
					return usagef("--backend=%q: want lockreg or etcd", backend)
				case backend == "lockreg" && endpoints == "":
					if err := refuseEtcdAuth(cmd, auth); err != nil {
						return err
					}
					return own(cmd, args)
				case backend == "lockreg" && cmd.Flags().Changed("backend"):
					return usagef("--etcd names an etcd cluster, but --backend=lockreg keeps the locks in shared memory: drop one of them")
				}
				fwd, err := a.etcdFlags(cmd, union(auth, "on-deadlock", "report", "interval", "live-stacks"))
				if err != nil {
					return err
				}
				if endpoints != "" {
					fwd = append(fwd, "--etcd", endpoints)
				}
				return a.execEtcd(cmd, append(append(append([]string{"run"}, fwd...), "--"), args...))
			}
		}
	}
}

// union returns the names of set and names.
func union(set map[string]bool, names ...string) map[string]bool {
	u := map[string]bool{}
	for k := range set {
		u[k] = true
	}
	for _, n := range names {
		u[n] = true
	}
	return u
}

// refuseEtcdAuth refuses an etcd auth flag given for a shared-memory run.
func refuseEtcdAuth(cmd *cobra.Command, auth map[string]bool) error {
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if auth[f.Name] && err == nil {
			err = usagef("%s--%s is for etcd runs (etcd://HOST:PORT/RUN, or --etcd); drop it for a shared-memory run", cmdPrefix(cmd), f.Name)
		}
	})
	return err
}

// etcdFlags returns the flags of cmd to hand to lockwatch-etcd: the output
// format, --stuck-after, and those of pass that were set. A flag set that
// lockwatch-etcd does not take is an error, never silently dropped.
func (a *app) etcdFlags(cmd *cobra.Command, pass map[string]bool) ([]string, error) {
	fwd := []string{"-o", a.output, "--stuck-after", a.opts.StuckAfter.String()}
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch name := f.Name; {
		case name == "output" || name == "stuck-after" || name == "etcd" || name == "backend":
		case pass[name]:
			fwd = append(fwd, "--"+name, f.Value.String())
		case err == nil:
			err = usagef("%s--%s does not apply to etcd runs; see '%s --help'", cmdPrefix(cmd), name, cmd.CommandPath())
		}
	})
	return fwd, err
}

// execEtcd runs lockwatch-etcd with args (execTool).
func (a *app) execEtcd(cmd *cobra.Command, args []string) error {
	path, err := findTool(etcdTool, "etcd runs", "etcd", "make build-etcd", "cd etcd && go install ./cmd/"+etcdTool)
	if err != nil {
		return err
	}
	return a.execTool(path, args)
}

// execTool runs a command of lockwatch's own (lockwatch-etcd,
// lockwatch-pg) with args, its standard streams lockwatch's, and returns
// its exit status as lockwatch's. Signals that reach lockwatch are passed
// on to it.
func (a *app) execTool(path string, args []string) error {
	c := exec.Command(path, args...)
	c.Stdin, c.Stdout, c.Stderr = a.stdin, safeout.Raw(a.stdout), safeout.Raw(a.stderr) // lockwatch-etcd's own
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := c.Start(); err != nil {
		return usagef("cannot run %s: %v", path, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	for {
		select {
		case sig := <-sigs:
			_ = c.Process.Signal(sig)
		case err := <-done:
			var xe *exec.ExitError
			switch {
			case errors.As(err, &xe):
				if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return &exitError{code: 128 + int(ws.Signal()), program: true}
				}
				// The tool printed its own message.
				return &exitError{code: xe.ExitCode(), program: true}
			case err != nil:
				return usagef("%s: %v", path, err)
			}
			return nil
		}
	}
}

// findTool finds the command name (what: "etcd runs", which it reads;
// links: what lockwatch would otherwise link) beside lockwatch's own
// executable, else on PATH, or says how to build and install it.
func findTool(name, what, links, build, install string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	beside := "beside lockwatch"
	if exe, err := os.Executable(); err == nil {
		beside = "in " + filepath.Dir(exe)
	}
	if errors.Is(err, fs.ErrPermission) {
		return "", usagef("%s on PATH is not executable: %v", name, err)
	}
	return "", usagef("%s are read by %s, a command of its own (so that lockwatch does not link %s), found neither %s nor on PATH: "+
		"build it with '%s' (it goes in bin/, beside bin/lockwatch), or install it with '%s'", what, name, links, beside, build, install)
}
