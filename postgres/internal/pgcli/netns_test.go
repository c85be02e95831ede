package pgcli_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/postgres/internal/pgtest"
)

// Addresses of the test's own link: a veth pair between this machine and a
// network namespace the test makes and removes (link-local, never routed).
const (
	hostAddr = "169.254.231.1"
	nsAddr   = "169.254.231.2"
)

// ip runs ip(8), failing the test on error.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestDeadClientNetns: a client in a network namespace takes an advisory
// lock and stays idle in transaction; its link goes down and it is
// SIGKILLed, so its FIN never reaches the server, whose session lingers
// holding the lock while a session of this machine waits for it. Before
// the kill, attach names the client process (in its namespace) alive;
// after it, attach reports the session a dead holder (its client's end of
// the connection closed on this machine, held by no process), in table and
// JSON; --terminate-dead ends the session with pg_terminate_backend, said
// in one line, and the waiter gets the lock.
func TestDeadClientNetns(t *testing.T) {
	needServer(t)
	switch {
	case cluster == nil:
		t.Skip("NOTE: needs a server of its own, listening on the test's link (not $" + pgtest.EnvServer + ")")
	case os.Geteuid() != 0:
		t.Skip("NOTE: needs root, to make a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("NOTE: needs ip(8) (iproute2), to make a network namespace")
	}
	id := strconv.Itoa(os.Getpid())
	ns, hostIf, nsIf := "lwpg"+id, "lwpgh"+id, "lwpgn"+id
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	ip(t, "link", "set", nsIf, "netns", ns)
	ip(t, "addr", "add", hostAddr+"/30", "dev", hostIf)
	ip(t, "link", "set", hostIf, "up")
	ip(t, "-n", ns, "addr", "add", nsAddr+"/30", "dev", nsIf)
	ip(t, "-n", ns, "link", "set", nsIf, "up")

	srv, err := cluster.Start(pgtest.Options{Listen: []string{hostAddr}, Trust: []string{nsAddr + "/32"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c := connect(t, srv.URL())
	nsURL := fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", hostAddr, srv.Port)
	holder := startClient(t, nsURL, "netns-holder", []string{"ip", "netns", "exec", ns}, "BEGIN", "SELECT pg_advisory_xact_lock(3001)")
	holder.await(t, 1)
	waiter := startClient(t, srv.URL(), "waiter", nil, "SELECT pg_advisory_lock(3001)")
	awaitWaiting(t, c, waiter.backend, 0)

	out, _, _ := attach(t, srv.URL())
	if want := fmt.Sprintf("client %s:", nsAddr); !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("= pid %d on this machine", holder.cmd.Process.Pid)) {
		t.Errorf("before the kill, the report does not name the client, pid %d at %s, alive:\n%s", holder.cmd.Process.Pid, nsAddr, out)
	}

	ip(t, "link", "set", hostIf, "down")
	holder.stop() // SIGKILL; its FIN cannot leave the namespace
	out, errOut, code := attach(t, srv.URL())
	want := fmt.Sprintf("DEAD-HOLDER session pg/%d [netns-holder] holds \"postgres/advisory(3001)\", but its client is gone: its end of the connection, %s:", holder.backend, nsAddr)
	if code != 3 || !strings.Contains(out, want) {
		t.Fatalf("after the kill, attach exited %d; want 3 and %q:\n%s%s", code, want, out, errOut)
	}
	t.Log(out)
	r, _ := attachJSON(t, srv.URL())
	if len(r.Findings) == 0 || r.Findings[0].Kind != "dead-holder" || r.Findings[0].Holder == nil || r.Findings[0].Holder.PID != holder.backend ||
		r.Findings[0].Holder.State != "dead" || len(r.Findings[0].Waiters) != 1 || r.Findings[0].Waiters[0].PID != waiter.backend {
		t.Errorf("JSON findings %+v; want dead-holder pg/%d (dead) with waiter pg/%d", r.Findings, holder.backend, waiter.backend)
	}

	_, errOut, _ = attach(t, "--terminate-dead", srv.URL())
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], fmt.Sprintf("lockwatch: ended session pg/%d with pg_terminate_backend", holder.backend)) {
		t.Errorf("--terminate-dead said %q; want one line: ended session pg/%d", errOut, holder.backend)
	}
	waiter.await(t, 0) // it has the lock now
}
