package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/liveness"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// Lock order of the drop-in mutexes (github.com/lockwatch/lockwatch/sync),
// in real processes: a program takes its mutexes in the orders of a
// script, and lockwatch attach (by pid or by run), and run's final report,
// say whether they can deadlock.

// dropOrderEnv holds a droporder role's script: groups separated by ";",
// each run after the previous one ended. A group is a sequence of mutexes
// taken in order and released in reverse ("A,B"), by one goroutine, or,
// with a prefix "N*", by N goroutines at once, each 10 times ("20*B,A").
// An upper-case letter is a Mutex, a lower-case one an RWMutex, taken with
// Lock, or with RLock when followed by ":r" ("a:r").
const dropOrderEnv = "LOCKWATCH_CLI_TEST_DROPORDER"

// dropOrderRole runs the script, says "done", and waits for its stdin to
// close before it closes its probe.
func dropOrderRole(dir string) int {
	a, err := probe.Start(probe.Options{Dir: dir, Role: "droporder"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	locks := map[string]gosync.Locker{}
	lockOf := func(tok string) gosync.Locker {
		name, read := strings.CutSuffix(tok, ":r")
		k := name
		if read {
			k += ":r"
		}
		if l, ok := locks[k]; ok {
			return l
		}
		if strings.ToUpper(name) == name {
			m := new(lwsync.Mutex)
			lwsync.SetName(m, name)
			locks[k] = m
			return m
		}
		rw, ok := locks[name].(*lwsync.RWMutex)
		if !ok {
			rw = new(lwsync.RWMutex)
			lwsync.SetName(rw, name)
			locks[name] = rw
		}
		locks[name+":r"] = rw.RLocker()
		return locks[k]
	}
	stdin := bufio.NewReader(os.Stdin)
	for _, group := range strings.Split(os.Getenv(dropOrderEnv), ";") {
		if group == "wait" {
			fmt.Println("waiting")
			stdin.ReadString('\n')
			continue
		}
		n, times := 1, 1
		if i := strings.Index(group, "*"); i > 0 {
			n, _ = strconv.Atoi(group[:i])
			group, times = group[i+1:], 10
		}
		var seq []gosync.Locker
		for _, tok := range strings.Split(group, ",") {
			seq = append(seq, lockOf(tok))
		}
		var wg gosync.WaitGroup
		for range n {
			wg.Go(func() {
				for range times {
					takeDropin(seq)
				}
			})
		}
		wg.Wait()
	}
	fmt.Println("done")
	io.Copy(io.Discard, stdin)
	if err := a.Close(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// takeDropin takes the locks in order, then releases them in reverse.
func takeDropin(seq []gosync.Locker) {
	for _, l := range seq {
		l.Lock()
	}
	for i := len(seq) - 1; i >= 0; i-- {
		seq[i].Unlock()
	}
}

// dropOrderLoadRole: 8 goroutines, 8 mutexes, a million acquires in all,
// nested, always in index order (each goroutine takes a run of mutexes
// from a start that moves on), then "done"; it waits for its stdin.
func dropOrderLoadRole(dir string) int {
	a, err := probe.Start(probe.Options{Dir: dir, Role: "load"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	var ms [8]lwsync.Mutex
	const perGoroutine = 1_000_000 / 8
	var wg gosync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			done, k := 0, g
			for done < perGoroutine {
				first, depth := k%8, 1+(k/8)%4
				last := min(first+depth, 8)
				for i := first; i < last; i++ {
					ms[i].Lock()
				}
				for i := last - 1; i >= first; i-- {
					ms[i].Unlock()
				}
				done += last - first
				k++
			}
		})
	}
	wg.Wait()
	fmt.Println("done")
	io.Copy(io.Discard, os.Stdin)
	if err := a.Close(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// dropOrderChild starts a droporder process and waits for its script to
// end. Closing the returned stdin ends it.
func dropOrderChild(t *testing.T, dir, script string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	// LOCKWATCH_DIR: its probe starts by itself, and attach finds it by pid.
	cmd, in, out := child(t, "droporder", dir, dropOrderEnv+"="+script, probe.EnvDir+"="+dir)
	expectLine(t, out, "done")
	return cmd, in
}

// dropOrders attaches to arg and returns the report's lock-order findings.
func dropOrders(t *testing.T, arg string) (*report.Report, []report.Finding) {
	t.Helper()
	code, stdout, stderr := lockwatch(t, "attach", "-o", "json", arg)
	if code != ExitOK {
		t.Fatalf("attach %s: exit %d; want 0 (a lock-order finding is a warning)\n%s", arg, code, stderr)
	}
	r := readReport(t, []byte(stdout))
	return r, lockOrders(r)
}

// A program takes A then B in one goroutine, then B then A in another,
// never overlapping. lockwatch attach PID reports the inversion with both
// goroutines and both stacks of each edge; after the program exited,
// attach of its run reports it again, from the file its probe left.
func TestAttachDropinLockOrder(t *testing.T) {
	dir := runDir(t)
	cmd, in := dropOrderChild(t, dir, "A,B;B,A")
	pid := cmd.Process.Pid
	_, fs := dropOrders(t, strconv.Itoa(pid))
	if len(fs) != 1 {
		t.Fatalf("got lock-order findings %+v; want one", fs)
	}
	f := fs[0]
	want := []string{fmt.Sprintf("A>B@%d", pid), fmt.Sprintf("B>A@%d", pid)}
	if got := steps(f); !slices.Equal(got, want) {
		t.Errorf("got loop %v; want %v", got, want)
	}
	if f.LockKind != "mutex" || f.Order[0].Goroutine == f.Order[1].Goroutine {
		t.Errorf("kind %q, goroutines %d and %d; want mutex, two goroutines", f.LockKind, f.Order[0].Goroutine, f.Order[1].Goroutine)
	}
	for _, st := range f.Order {
		if st.Goroutine == 0 || len(st.Stack) == 0 || len(st.HeldStack) == 0 || st.Where == nil || st.HeldAt == nil {
			t.Fatalf("step %s>%s: want a goroutine, both stacks and both call sites; got %+v", st.From, st.To, st)
		}
		for _, fr := range []*report.FrameJSON{st.Where, st.HeldAt} {
			if !strings.Contains(fr.Func, "takeDropin") {
				t.Errorf("step %s>%s: a lock taken at %s; want takeDropin", st.From, st.To, fr.Func)
			}
		}
		if !slices.ContainsFunc(st.HeldStack, func(fr report.FrameJSON) bool { return strings.Contains(fr.Func, "dropOrderRole") }) {
			t.Errorf("step %s>%s: the held lock's stack %v does not reach dropOrderRole", st.From, st.To, st.HeldStack)
		}
	}
	if !strings.HasPrefix(f.Next, "take A before B everywhere; the B-then-A order is taken at cli.takeDropin droporder_test.go:") {
		t.Errorf("next: got %q", f.Next)
	}
	_, stdout, _ := lockwatch(t, "attach", strconv.Itoa(pid))
	for _, w := range []string{"LOCK-ORDER lock order A -> B -> A can deadlock", "A -> B: pid", "took A at cli.takeDropin"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("table report lacks %q:\n%s", w, stdout)
		}
	}

	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("droporder process: %v", err)
	}
	if _, fs := dropOrders(t, dir); len(fs) != 1 || !slices.Equal(steps(fs[0]), want) {
		t.Errorf("after the program exited: got %+v; want the same loop %v", fs, want)
	}
}

// A -> B, B -> C, C -> A in three goroutines: one loop of three edges.
func TestAttachDropinLockOrderThree(t *testing.T) {
	dir := runDir(t)
	cmd, _ := dropOrderChild(t, dir, "A,B;B,C;C,A")
	pid := cmd.Process.Pid
	_, fs := dropOrders(t, strconv.Itoa(pid))
	want := []string{fmt.Sprintf("A>B@%d", pid), fmt.Sprintf("B>C@%d", pid), fmt.Sprintf("C>A@%d", pid)}
	if len(fs) != 1 || !slices.Equal(steps(fs[0]), want) {
		t.Fatalf("got %+v; want one loop %v", fs, want)
	}
}

// The lock-order cases of go-deadlock's tests (github.com/sasha-s/go-deadlock,
// deadlock_test.go), as scripts: its TestLockOrder (an RWMutex locked then
// a Mutex, and the Mutex then the RWMutex read-locked: one inversion), its
// TestConcurrentLockOrderDetection (A -> B, then 20 goroutines at once
// taking B -> A: one inversion, recorded once), and its TestNoDeadlocks
// (10 goroutines a, B, c read-locked and 10 a read-locked, B, c at once,
// 10 times each: consistent, none). And ours: consistent orders, locks
// never nested, re-taken after release, and D released before E then D.
func TestAttachDropinLockOrderCases(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         []string // the loop's steps, without pids; nil: no finding
	}{
		{"go-deadlock TestLockOrder", "a,B;B,a:r", []string{"B>a", "a>B"}},
		{"go-deadlock TestConcurrentLockOrderDetection", "A,B;20*B,A", []string{"A>B", "B>A"}},
		{"go-deadlock TestNoDeadlocks", "10*a,B,c:r;10*a:r,B,c", nil},
		{"consistent", "A,B,C;A,C;B,C", nil},
		{"never nested", "A;B;C;A", nil},
		{"re-taken after release", "A;A;B,C;B", nil},
		{"released before", "D;E,D;E", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := runDir(t)
			cmd, _ := dropOrderChild(t, dir, tc.script)
			_, fs := dropOrders(t, strconv.Itoa(cmd.Process.Pid))
			var got []string
			if len(fs) > 1 {
				t.Fatalf("got %d findings %+v; want at most one", len(fs), fs)
			}
			if len(fs) == 1 {
				for _, s := range steps(fs[0]) {
					got = append(got, s[:strings.Index(s, "@")])
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got loop %v; want %v", got, tc.want)
			}
		})
	}
}

// Two processes of one program, with the same mutex names (and ids), take
// them in opposite orders: two processes' mutexes are different locks, no
// finding.
func TestAttachDropinTwoProcessesNoOrder(t *testing.T) {
	dir := runDir(t)
	dropOrderChild(t, dir, "A,B")
	dropOrderChild(t, dir, "B,A")
	if _, fs := dropOrders(t, dir); len(fs) != 0 {
		t.Errorf("got %+v; want no lock-order finding", fs)
	}
}

// 8 goroutines take 8 mutexes a million times in all, nested, always in
// index order: no finding, each edge recorded once, none dropped.
func TestAttachDropinLockOrderLoad(t *testing.T) {
	dir := runDir(t)
	cmd, _, out := child(t, "droporder-load", dir, probe.EnvDir+"="+dir)
	expectLine(t, out, "done")
	r, fs := dropOrders(t, strconv.Itoa(cmd.Process.Pid))
	if len(fs) != 0 || r.OrdersDropped != 0 {
		t.Errorf("got findings %+v, %d dropped; want none", fs, r.OrdersDropped)
	}
	if len(r.Processes) != 1 {
		t.Fatalf("processes %+v; want the load process", r.Processes)
	}
	p := r.Processes[0]
	c := &probeclient.Client{Path: probeclient.SocketPath(dir, procid.ID{PID: p.PID, Start: p.Start})}
	v, err := c.Orders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Runs of up to 4 from each start: i -> j for i < j <= i+3.
	if len(v.Edges) != 18 || v.Dropped != 0 || v.Untracked != 0 {
		t.Errorf("%d edges recorded, %d dropped, %d untracked; want 18 (i -> j for i < j <= i+3), 0, 0", len(v.Edges), v.Dropped, v.Untracked)
	}
}

// lockwatch run prints the inversion in its final report, from the file
// the program's probe left, and --fail-on=lock-order exits 4.
func TestRunDropinLockOrder(t *testing.T) {
	runLockOrder(t, roleEnv+"=droporder", dropOrderEnv, "A", "B")
}

// ordersSource serves a snapshot of order edges only.
type ordersSource struct{ s *lockstate.Snapshot }

func (o ordersSource) Read(context.Context) (*lockstate.Snapshot, error) { return o.s, nil }

// loopsBy returns the lock-order loops of the edges of v when a mutex is
// identified by key, as "a>b" steps.
func loopsBy(t *testing.T, v *probeclient.OrderView, key func(probeclient.OrderMutex) string) [][]string {
	t.Helper()
	s := &lockstate.Snapshot{Run: "identity", Taken: time.Now()}
	for _, e := range v.Edges {
		s.Orders = append(s.Orders, lockstate.OrderEdge{From: lockstate.Key{Kind: "mutex", Name: key(e.From)},
			To: lockstate.Key{Kind: "mutex", Name: key(e.To)}, Party: lockstate.Party{ID: procid.ID{PID: v.PID, Start: v.Start}, Goroutine: e.Goroutine}})
	}
	r, err := report.Diagnose(t.Context(), report.Sources{Locks: []lockstate.Source{ordersSource{s}}, Host: liveness.System{}}, report.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, f := range lockOrders(r) {
		var loop []string
		for _, st := range f.Order {
			loop = append(loop, st.From+">"+st.To)
		}
		out = append(out, loop)
	}
	return out
}

// TestDropinOrderIdentity measures what identifies a mutex for ordering
// on examples/droporder (docs/lock-order.md, "What identifies a
// drop-in mutex"): a list walked hand over hand (no deadlock possible), a
// bank transfer both ways between two accounts (a real inversion of two
// instances) and a session/cache inversion on different instances (a
// latent one between two kinds). By instance (the default), lockwatch run
// finds the bank and misses the cache; with the mutexes named by kind
// (SetName), it finds the cache and misses the bank (account -> account is
// no loop); by the site that first locked each mutex (lockdep's classes
// made automatically) it finds neither, since the program's sessions and
// caches are first locked at four different sites and its accounts at one.
// None reports the list.
func TestDropinOrderIdentity(t *testing.T) {
	lw, _ := bins(t)
	prog := filepath.Join(t.TempDir(), "droporder")
	build := exec.Command("go", "build", "-trimpath", "-o", prog, "github.com/lockwatch/lockwatch/examples/droporder")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) (string, *probeclient.OrderView) {
		t.Helper()
		cmd := exec.Command(lw, append([]string{"run", "--keep", "--", prog}, args...)...)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lockwatch run %v: %v\n%s", args, err, out)
		}
		_, rest, _ := strings.Cut(string(out), "lockwatch report: ")
		dir, _, _ := strings.Cut(rest, ",")
		files, _ := filepath.Glob(filepath.Join(dir, "*.orders.json"))
		if len(files) != 1 {
			t.Fatalf("run %v: orders files %v in %q; want one\n%s", args, files, dir, out)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		var v probeclient.OrderView
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return string(out), &v
	}
	kindOf := func(site string) string {
		for _, k := range []string{"newItem", "open", "lookup", "evict"} {
			if strings.Contains(site, "main."+k+" ") {
				return k
			}
		}
		return site
	}

	plain, v := run()
	instance := loopsBy(t, v, func(m probeclient.OrderMutex) string { return fmt.Sprintf("%s#%d", kindOf(m.Name), m.ID) })
	site := loopsBy(t, v, func(m probeclient.OrderMutex) string { return m.Name }) // unnamed: where the first edge naming it took it
	classes, vc := run("-classes")
	named := loopsBy(t, vc, func(m probeclient.OrderMutex) string { return m.Name })
	t.Logf("by instance: %d edges, loops %v", len(v.Edges), instance)
	t.Logf("by site: loops %v", site)
	t.Logf("by SetName class: %d edges recorded, loops %v", len(vc.Edges), named)

	if len(instance) != 1 || len(instance[0]) != 2 || !strings.HasPrefix(instance[0][0], "main.transfer ") {
		t.Errorf("by instance: loops %v; want the bank's accounts only (taken in main.transfer)", instance)
	}
	if !strings.Contains(plain, "LOCK-ORDER lock order main.transfer main.go:") {
		t.Errorf("lockwatch run: want the accounts' loop:\n%s", plain)
	}
	if len(v.Edges) != 99+2+2 {
		t.Errorf("by instance: %d edges; want 103 (99 of the list, 2 of the bank, 2 of the cache)", len(v.Edges))
	}
	// By site (a lock has none of its own: the site where the first edge
	// naming it took it), the bank's two accounts are two sites of
	// main.transfer, so their loop is found; the cache's is not.
	if len(site) != 1 || len(site[0]) != 2 || !strings.HasPrefix(site[0][0], "main.transfer ") {
		t.Errorf("by site: loops %v; want the bank's only", site)
	}
	if want := [][]string{{"cache>session", "session>cache"}}; !slices.EqualFunc(named, want, slices.Equal) {
		t.Errorf("by SetName class: loops %v; want %v", named, want)
	}
	if !strings.Contains(classes, "LOCK-ORDER lock order cache -> session -> cache can deadlock") {
		t.Errorf("lockwatch run -classes: want the cache/session loop:\n%s", classes)
	}
	pairs := map[string]bool{}
	for _, e := range vc.Edges {
		pairs[e.From.Name+">"+e.To.Name] = true
	}
	if len(vc.Edges) != 103 || len(pairs) != 4 {
		t.Errorf("by SetName class: %d edges recorded, %d pairs of names %v; want 103 (edges are recorded by instance) and 4", len(vc.Edges), len(pairs), pairs)
	}
}

// watch prints a new report when a program takes the inverse order of
// drop-in mutexes it took before, and exits 0 at Ctrl-C.
func TestWatchDropinLockOrder(t *testing.T) {
	dir := runDir(t)
	cmd, in, out := child(t, "droporder", dir, dropOrderEnv+"=A,B;wait;B,A", probe.EnvDir+"="+dir)
	expectLine(t, out, "waiting")
	w := startWatchJSON(t, dir)
	next := w.next
	if fs := lockOrders(next()); len(fs) != 0 {
		t.Fatalf("one order only: got %+v; want no lock-order finding", fs)
	}
	fmt.Fprintln(in)
	expectLine(t, out, "done")
	stop := time.AfterFunc(probablyStillBlocked, w.cancel)
	defer stop.Stop()
	var fs []report.Finding
	for len(fs) == 0 {
		fs = lockOrders(next())
	}
	pid := cmd.Process.Pid
	if want := []string{fmt.Sprintf("A>B@%d", pid), fmt.Sprintf("B>A@%d", pid)}; len(fs) != 1 || !slices.Equal(steps(fs[0]), want) {
		t.Errorf("after the inverse order: got %+v; want one loop %v", fs, want)
	}
	w.stop("with a lock-order finding")
}

// While a program's probe stands down (no socket: as when its looks find
// every goroutine blocked), attach PID reads its drop-in mutexes from its
// memory and its lock-order edges from the file the probe wrote as it
// stood down: the same inversion as attach of its run, and as while it
// served, with one note that says it stands down and no other; lockwatch
// ps says it stands down.
func TestAttachStoodDownLockOrder(t *testing.T) {
	dir := runDir(t)
	cmd, _ := dropOrderChild(t, dir, "A,B;B,A")
	pid := cmd.Process.Pid
	st, err := proc.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	sock := probeclient.SocketPath(dir, st.Identity())
	if err := (&probeclient.Client{Path: sock}).StandDown(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFile(t, sock, false)
	_, stdout, _ := lockwatch(t, "ps")
	if !slices.ContainsFunc(strings.Split(stdout, "\n"), func(l string) bool {
		return strings.Contains(l, " "+strconv.Itoa(pid)+" ") && strings.HasSuffix(l, " (probe stands down)")
	}) {
		t.Errorf("ps does not say that pid %d's probe stands down:\n%s", pid, stdout)
	}
	want := []string{fmt.Sprintf("A>B@%d", pid), fmt.Sprintf("B>A@%d", pid)}
	for _, arg := range []string{strconv.Itoa(pid), dir} {
		r, fs := dropOrders(t, arg)
		if len(fs) != 1 || !slices.Equal(steps(fs[0]), want) {
			t.Errorf("attach %s while the probe stands down: got findings %+v; want the loop %v", arg, fs, want)
		}
		var down int
		for _, n := range r.Notes {
			if strings.Contains(n, "probe stands down") {
				down++
			} else if strings.Contains(n, "connect") || strings.Contains(n, "no such file") {
				t.Errorf("attach %s: a raw note beside the stand-down one: %q", arg, n)
			}
		}
		if down != 1 {
			t.Errorf("attach %s: notes %q; want one that says the probe stands down", arg, r.Notes)
		}
	}
}
