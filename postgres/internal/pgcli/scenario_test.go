package pgcli_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The JSON report, as far as these tests read it (docs/json.md).
type jsonReport struct {
	Run      string `json:"run"`
	Findings []struct {
		Kind    string      `json:"kind"`
		Lock    string      `json:"lock"`
		Holder  *jsonParty  `json:"holder"`
		Waiters []jsonParty `json:"waiters"`
		Cycle   []jsonParty `json:"cycle"`
		Summary string      `json:"summary"`
		Next    string      `json:"next"`
		Doing   string      `json:"doing"`
		Behind  []jsonParty `json:"behind"`
	} `json:"findings"`
	Locks []struct {
		Name   string     `json:"name"`
		Kind   string     `json:"kind"`
		State  string     `json:"state"`
		Holder *jsonParty `json:"holder"`
		Facts  []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"facts"`
	} `json:"locks"`
	Waiters []struct {
		jsonParty
		Lock string `json:"lock"`
	} `json:"waiters"`
	Processes []struct {
		Host    string `json:"host"`
		PID     int    `json:"pid"`
		Role    string `json:"role"`
		Command string `json:"command"`
		State   string `json:"state"`
	} `json:"processes"`
	Notes  []string `json:"notes"`
	Stacks []struct {
		PID    int    `json:"pid"`
		Lock   string `json:"lock"`
		Role   string `json:"role"`
		Source string `json:"source"`
		State  string `json:"state"`
		Frames []struct {
			Func string `json:"func"`
		} `json:"frames"`
	} `json:"stacks"`
}

// goStack says whether the report has a row of pid's goroutines in role,
// read from its memory, with a frame of each of funcs (name suffixes).
func (r *jsonReport) goStack(pid int, role, lock string, funcs ...string) bool {
	for _, s := range r.Stacks {
		if s.PID != pid || s.Role != role || s.Source != "memory" || s.Lock != lock {
			continue
		}
		all := true
		for _, fn := range funcs {
			found := false
			for _, f := range s.Frames {
				found = found || strings.HasSuffix(f.Func, fn) || strings.HasPrefix(f.Func, fn)
			}
			all = all && found
		}
		if all {
			return true
		}
	}
	return false
}

type jsonParty struct {
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	State string `json:"state"`
	Role  string `json:"role"`
}

func attachJSON(t *testing.T, args ...string) (*jsonReport, int) {
	t.Helper()
	out, errOut, code := attach(t, append([]string{"-o", "json"}, args...)...)
	var r jsonReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("attach -o json: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	return &r, code
}

// TestChainIdleInTransaction: a session idle in transaction holds an
// advisory lock that a second session waits for while holding another,
// which a third waits for. attach reports the first a stuck holder, names
// its client process (this machine's, by its TCP port), shows the chain in
// its waiters, and exits 3, in table and JSON.
func TestChainIdleInTransaction(t *testing.T) {
	url := needServer(t)
	c := connect(t, url)
	holder := startClient(t, url, "holder", nil, "BEGIN", "SELECT pg_advisory_xact_lock(1001)")
	holder.await(t, 1)
	middle := startClient(t, url, "middle", nil, "BEGIN", "SELECT pg_advisory_xact_lock(1002)", "SELECT pg_advisory_xact_lock(1001)")
	middle.await(t, 1)
	tail := startClient(t, url, "tail", nil, "SELECT pg_advisory_lock(1002)")
	const stuckAfter = 200 * time.Millisecond
	awaitWaiting(t, c, middle.backend, 2*stuckAfter)
	awaitWaiting(t, c, tail.backend, 2*stuckAfter)

	out, errOut, code := attach(t, "--stuck-after", stuckAfter.String(), url)
	t.Log(out)
	if code != 3 {
		t.Errorf("attach exited %d; want 3 (a deadlock: a stuck holder)\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("STUCK-HOLDER session pg/%d [holder] has held \"postgres/advisory(1001)\"", holder.backend),
		"idle in transaction",
		"pg_terminate_backend(" + strconv.Itoa(holder.backend) + ")",
		fmt.Sprintf("pid %d on this machine", holder.cmd.Process.Pid),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report says nothing of %q:\n%s", want, out)
		}
	}
	// The client process is listed, alive, by its pid.
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^ %d +\S.* +alive`, holder.cmd.Process.Pid)).MatchString(out) {
		t.Errorf("the processes table does not list the holder's client, pid %d, alive:\n%s", holder.cmd.Process.Pid, out)
	}

	r, code := attachJSON(t, "--stuck-after", stuckAfter.String(), url)
	if code != 3 || len(r.Findings) == 0 {
		t.Fatalf("attach -o json exited %d with findings %+v; want 3 and a stuck holder", code, r.Findings)
	}
	f := r.Findings[0]
	if f.Kind != "stuck-holder" || f.Lock != "postgres/advisory(1001)" || f.Holder == nil || f.Holder.PID != holder.backend || f.Holder.Host != "pg" {
		t.Errorf("first finding %+v; want stuck-holder of postgres/advisory(1001) by pg/%d", f, holder.backend)
	}
	if len(f.Waiters) != 1 || f.Waiters[0].PID != middle.backend {
		t.Errorf("its waiters %+v; want pg/%d alone", f.Waiters, middle.backend)
	}
	waits := map[int]string{}
	for _, w := range r.Waiters {
		waits[w.PID] = w.Lock
	}
	if waits[middle.backend] != "postgres/advisory(1001)" || waits[tail.backend] != "postgres/advisory(1002)" {
		t.Errorf("waiters %v; want pg/%d on advisory(1001), pg/%d on advisory(1002)", waits, middle.backend, tail.backend)
	}
	client := false
	for _, p := range r.Processes {
		if p.Host == "" && p.PID == holder.cmd.Process.Pid && p.State == "alive" {
			client = true
		}
	}
	if !client {
		t.Errorf("processes %+v; want the holder's client, pid %d, alive", r.Processes, holder.cmd.Process.Pid)
	}
	// The clients are Go processes: the chain from the waiting session's
	// client goroutine, inside pgx, to the lock; the holder's client's
	// goroutine, blocked outside any statement, is what keeps the
	// transaction open.
	if !r.goStack(middle.cmd.Process.Pid, "waiter", "postgres/advisory(1001)", "github.com/jackc/pgx", "pgcli_test.client") {
		t.Errorf("no row of the waiting client's (pid %d) goroutine in pgx, waiting for advisory(1001): %+v; notes %q", middle.cmd.Process.Pid, r.Stacks, r.Notes)
	}
	if !r.goStack(holder.cmd.Process.Pid, "holder", "postgres/advisory(1001)", "pgcli_test.client") || !strings.Contains(f.Doing, "is a Go program: goroutine") {
		t.Errorf("no row of the holder's client's (pid %d) goroutines, or doing %q does not sum them up: %+v", holder.cmd.Process.Pid, f.Doing, r.Stacks)
	}
}

// TestCycle: two sessions each hold an advisory lock and wait for the
// other's, with deadlock_timeout long enough that PostgreSQL has not
// broken the cycle yet: attach reports the cycle.
func TestCycle(t *testing.T) {
	url := needServer(t)
	c := connect(t, url)
	a := startClient(t, url, "cycle-a", nil, "SET deadlock_timeout = '10min'", "BEGIN", "SELECT pg_advisory_xact_lock(2001)", gate, "SELECT pg_advisory_xact_lock(2002)")
	b := startClient(t, url, "cycle-b", nil, "SET deadlock_timeout = '10min'", "BEGIN", "SELECT pg_advisory_xact_lock(2002)", gate, "SELECT pg_advisory_xact_lock(2001)")
	a.await(t, 2)
	b.await(t, 2)
	a.open(t)
	b.open(t)
	awaitWaiting(t, c, a.backend, 0)
	awaitWaiting(t, c, b.backend, 0)
	r, code := attachJSON(t, url)
	if code != 3 {
		t.Errorf("attach exited %d; want 3", code)
	}
	var cycle []int
	for _, f := range r.Findings {
		if f.Kind == "cycle" {
			for _, st := range f.Cycle {
				cycle = append(cycle, st.PID)
			}
			if !strings.Contains(f.Summary, "PostgreSQL has not broken yet") || !strings.Contains(f.Next, "deadlock_timeout (1s on this server") {
				t.Errorf("cycle finding %q / %q; want PostgreSQL's words and its deadlock_timeout", f.Summary, f.Next)
			}
		}
	}
	if len(cycle) != 2 || !(cycle[0] == a.backend && cycle[1] == b.backend || cycle[0] == b.backend && cycle[1] == a.backend) {
		t.Errorf("cycle %v; want sessions %d and %d (findings %+v)", cycle, a.backend, b.backend, r.Findings)
	}
}

// TestUnixSocketClient: a client on the server's unix socket is found
// through its backend's socket and the kernel's peer (sock_diag), and
// named by its pid.
func TestUnixSocketClient(t *testing.T) {
	url := needServer(t)
	if private == nil {
		t.Skip("NOTE: needs the private server's unix socket (not $LOCKWATCH_TEST_POSTGRES's)")
	}
	c := connect(t, url)
	holder := startClient(t, private.SocketURL(), "on-socket", nil, "SELECT pg_advisory_lock(8001)")
	holder.await(t, 0)
	waiter := startClient(t, url, "waiter", nil, "SELECT pg_advisory_lock(8001)")
	awaitWaiting(t, c, waiter.backend, 0)
	out, _, _ := attach(t, url)
	if want := fmt.Sprintf("client unix socket = pid %d on this machine", holder.cmd.Process.Pid); !strings.Contains(out, want) {
		t.Errorf("the report does not say %q:\n%s", want, out)
	}
}
