package etcdreg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/report"
)

// The test binary re-runs itself as the processes of a run: ETCDREG_ROLE
// says which part it plays.
const (
	envRole      = "ETCDREG_ROLE"
	envEndpoints = "ETCDREG_ENDPOINTS"
	envRun       = "ETCDREG_RUN"
	envTTL       = "ETCDREG_TTL"
	envPolicy    = "ETCDREG_POLICY"
	envN         = "ETCDREG_N"
	envDir       = "ETCDREG_DIR"
)

// Named waits: how long a test waits for a condition before failing.
const patience = 60 * time.Second

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := runChild(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func childRegistry(ctx context.Context) (*clientv3.Client, *Registry, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(os.Getenv(envEndpoints), ","), DialTimeout: 10 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	opts := Options{Role: os.Getenv(envRole)}
	if s := os.Getenv(envTTL); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, nil, err
		}
		opts.TTL = time.Duration(n) * time.Second
	}
	if os.Getenv(envPolicy) == "recover" {
		opts.Policy = Recover
	}
	reg, err := Open(ctx, cli, os.Getenv(envRun), opts)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, reg, nil
}

func runChild(role string) error {
	ctx := context.Background()
	cli, reg, err := childRegistry(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	switch role {
	case "counter":
		return countUnderLock(ctx, reg)
	case "cmd":
		return commands(ctx, reg)
	}
	return fmt.Errorf("unknown role %q", role)
}

// countUnderLock increments a counter file N times under the lock "count",
// and fails if it ever finds another process inside.
func countUnderLock(ctx context.Context, reg *Registry) error {
	dir := os.Getenv(envDir)
	n, _ := strconv.Atoi(os.Getenv(envN))
	mu, err := reg.Mutex("count")
	if err != nil {
		return err
	}
	for range n {
		if err := mu.Lock(ctx); err != nil {
			return err
		}
		inside, err := os.OpenFile(filepath.Join(dir, "inside"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("mutual exclusion violated: %w", err)
		}
		inside.Close()
		b, err := os.ReadFile(filepath.Join(dir, "counter"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		c, _ := strconv.Atoi(string(b))
		if err := os.WriteFile(filepath.Join(dir, "counter"), []byte(strconv.Itoa(c+1)), 0o600); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, "inside")); err != nil {
			return err
		}
		if err := mu.Unlock(ctx); err != nil {
			return err
		}
	}
	return reg.Close()
}

// commands reads lines from stdin: "lock NAME" starts a goroutine that
// takes NAME and holds it (in holdUntilTold) until "unlock NAME";
// "nest NAME OTHER" makes the goroutine holding NAME take OTHER too. Each
// outcome is a line on stdout: held, ownerdead, unlocked, lost, err.
func commands(ctx context.Context, reg *Registry) error {
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format+"\n", args...)
		out.Unlock()
	}
	release := map[string]chan struct{}{}
	nest := map[string]chan *Mutex{}
	var mu sync.Mutex
	say("ready %d", os.Getpid())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		verb, name, _ := strings.Cut(sc.Text(), " ")
		if verb == "nest" {
			name, other, _ := strings.Cut(name, " ")
			m, err := reg.Mutex(other)
			if err != nil {
				return err
			}
			mu.Lock()
			ch := nest[name]
			mu.Unlock()
			ch <- m
			continue
		}
		m, err := reg.Mutex(name)
		if err != nil {
			return err
		}
		switch verb {
		case "try":
			switch ok, err := m.TryLock(ctx); {
			case err != nil:
				say("err %s %v", name, err)
			case ok:
				// Taken and released at once.
				say("held %s %d", name, m.Token())
				if err := m.Unlock(ctx); err != nil {
					say("err %s %v", name, err)
				} else {
					say("unlocked %s", name)
				}
			default:
				say("busy %s", name)
			}
		case "write":
			// A write to the resource "res" guarded by the hold's
			// fencing (IsOwner): refused once the hold is gone.
			resp, err := reg.cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(reg.k.p+"res", strconv.Itoa(os.Getpid()))).Commit()
			switch {
			case err != nil:
				say("err %s %v", name, err)
			case resp.Succeeded:
				say("wrote %s", name)
			default:
				say("refused %s", name)
			}
		case "lock":
			ch, nch := make(chan struct{}), make(chan *Mutex, 1)
			mu.Lock()
			release[name], nest[name] = ch, nch
			mu.Unlock()
			go holdUntilTold(ctx, m, ch, nch, say)
		case "unlock":
			mu.Lock()
			ch := release[name]
			mu.Unlock()
			close(ch)
		}
	}
	return nil
}

func holdUntilTold(ctx context.Context, m *Mutex, release chan struct{}, nest chan *Mutex, say func(string, ...any)) {
	switch err := m.Lock(ctx); {
	case errors.Is(err, ErrOwnerDead):
		say("ownerdead %s %d", m.Name(), m.Token())
	case err != nil:
		say("err %s %v", m.Name(), err)
		return
	default:
		say("held %s %d", m.Name(), m.Token())
	}
	// Say when the hold can no longer be counted on (Mutex.Done).
	stop := make(chan struct{})
	defer close(stop)
	go func(done <-chan struct{}) {
		select {
		case <-done:
			say("done %s", m.Name())
		case <-stop:
		}
	}(m.Done())
	select {
	case <-release:
	case other := <-nest:
		if err := other.Lock(ctx); err != nil {
			say("err %s %v", other.Name(), err)
		} else {
			say("held %s", other.Name())
		}
		<-release
	}
	switch err := m.Unlock(ctx); {
	case errors.Is(err, ErrLockLost):
		say("lost %s", m.Name())
	case err != nil:
		say("err %s %v", m.Name(), err)
	default:
		say("unlocked %s", m.Name())
	}
}

// testEnv is one embedded etcd server and a client, for one test.
type testEnv struct {
	t   testing.TB
	srv *embedded.Server
	cli *clientv3.Client
	run string
	dir string
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	srv, err := embedded.Start(filepath.Join(dir, "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &testEnv{t: t, srv: srv, cli: cli, run: "test-" + strconv.Itoa(os.Getpid()), dir: dir}
}

// child is a process of the run: the test binary in a role.
type child struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	pid   int
}

func (e *testEnv) start(role, host string, env ...string) *child {
	e.t.Helper()
	return e.startIn("", role, host, env...)
}

// startIn starts a child in the network namespace ns ("": this one).
func (e *testEnv) startIn(ns, role, host string, env ...string) *child {
	t := e.t
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if ns != "" {
		cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), envRole+"="+role, envEndpoints+"="+strings.Join(e.srv.Endpoints(), ","),
		envRun+"="+e.run, EnvHost+"="+host, envDir+"="+e.dir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, in: in, lines: make(chan string, 100), pid: cmd.Process.Pid}
	go func() {
		sc := bufio.NewScanner(outp)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if role == "cmd" {
		c.expect("ready")
	}
	return c
}

func (c *child) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		c.t.Fatalf("pid %d: %v", c.pid, err)
	}
}

// expect waits for the child's next line and checks that it starts with
// want; it returns the line. A "done" line (a hold's Done closed: on a
// loaded machine a renewal may come late) is passed over unless wanted.
func (c *child) expect(want string) string {
	c.t.Helper()
	for {
		select {
		case got, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("pid %d ended; want line %q", c.pid, want)
			}
			if strings.HasPrefix(got, "done ") && !strings.HasPrefix(want, "done ") {
				c.t.Logf("pid %d: %s (a renewal came late)", c.pid, got)
				continue
			}
			if !strings.HasPrefix(got, want) {
				c.t.Fatalf("pid %d said %q; want %q", c.pid, got, want)
			}
			return got
		case <-time.After(patience):
			c.t.Fatalf("pid %d: no line %q after %v", c.pid, want, patience)
		}
	}
}

// silent checks that the child has said nothing more (a Lock still waits).
func (c *child) silent() {
	c.t.Helper()
	for {
		select {
		case got := <-c.lines:
			if strings.HasPrefix(got, "done ") {
				continue
			}
			c.t.Fatalf("pid %d said %q; want it still waiting", c.pid, got)
		default:
			return
		}
	}
}

// waitFor polls cond until it holds, failing the test after patience.
func (e *testEnv) waitFor(what string, cond func(*Snapshot) bool) *Snapshot {
	e.t.Helper()
	deadline := time.Now().Add(patience)
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := Read(ctx, e.cli, e.run)
		cancel()
		if err == nil && cond(s) {
			return s
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond) // poll interval, not a stand-in for the condition
	}
	e.t.Fatalf("no %s after %v (last error: %v)", what, patience, lastErr)
	return nil
}

func lockOf(s *Snapshot, name string) Lock {
	for _, l := range s.Locks {
		if l.Name == name {
			return l
		}
	}
	return Lock{}
}

func waitersOn(s *Snapshot, name string) int {
	n := 0
	for _, w := range s.Waiters {
		if w.Lock == name {
			n++
		}
	}
	return n
}

// diagnoseRun diagnoses a run as lockwatch does: report, fed by
// etcdsrc. etcdsrc imports this package, so an external test file
// (report_test.go) sets it, through SetDiagnose.
var diagnoseRun func(ctx context.Context, cli *clientv3.Client, run, localHost string, stuckAfter time.Duration, live bool) (*report.Report, error)

// SetDiagnose sets the function the tests diagnose runs with.
func SetDiagnose(f func(ctx context.Context, cli *clientv3.Client, run, localHost string, stuckAfter time.Duration, live bool) (*report.Report, error)) {
	diagnoseRun = f
}

// diagnose diagnoses the run from a reader on localHost, asking the
// processes for their live stacks when live.
func (e *testEnv) diagnose(localHost string, stuckAfter time.Duration, live bool) *report.Report {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := diagnoseRun(ctx, e.cli, e.run, localHost, stuckAfter, live)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func findingOf(r *report.Report, kind report.Kind) (report.Finding, bool) {
	for _, f := range r.Findings {
		if f.Kind == kind {
			return f, true
		}
	}
	return report.Finding{}, false
}

func lockRow(r *report.Report, name string) report.LockRow {
	for _, l := range r.Locks {
		if l.Name == name {
			return l
		}
	}
	return report.LockRow{}
}
