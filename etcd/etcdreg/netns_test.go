package etcdreg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/embedded"
	"github.com/lockwatch/lockwatch/report"
)

// netnsHost is a host in a network namespace of its own, joined to this
// one by a veth pair: ns side 10.231.N.2, this side 10.231.N.1 (the
// namespaces' own addresses only). Cut and Heal take this side's link
// down and up: a partition between the host and etcd.
type netnsHost struct {
	t    *testing.T
	ns   string
	link string // this side of the veth pair
	here string // this side's address
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetnsHost makes the namespace and the veth pair, and deletes them at
// the end of the test. It skips the test, saying why, when not root or
// when ip(8) is missing.
func newNetnsHost(t *testing.T) *netnsHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: making network namespaces needs root (ip netns add); run the tests as root to partition a host from etcd")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED: no ip(8) (iproute2) to make network namespaces: install iproute2")
	}
	n := os.Getpid()%200 + 20
	h := &netnsHost{t: t, ns: fmt.Sprintf("lw%d", os.Getpid()), link: fmt.Sprintf("lw%dh", os.Getpid()), here: fmt.Sprintf("10.231.%d.1", n)}
	peer := fmt.Sprintf("lw%dn", os.Getpid())
	ip(t, "netns", "add", h.ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", h.link).Run() // with its peer
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
	})
	ip(t, "link", "add", h.link, "type", "veth", "peer", "name", peer)
	ip(t, "link", "set", peer, "netns", h.ns)
	ip(t, "addr", "add", h.here+"/30", "dev", h.link)
	ip(t, "link", "set", h.link, "up")
	ip(t, "netns", "exec", h.ns, "ip", "addr", "add", fmt.Sprintf("10.231.%d.2/30", n), "dev", peer)
	ip(t, "netns", "exec", h.ns, "ip", "link", "set", peer, "up")
	ip(t, "netns", "exec", h.ns, "ip", "link", "set", "lo", "up")
	return h
}

func (h *netnsHost) cut()  { ip(h.t, "link", "set", h.link, "down") }
func (h *netnsHost) heal() { ip(h.t, "link", "set", h.link, "up") }

// TestPartitionedHolder: a holder on a host in a network namespace is cut
// off from etcd past its TTL (2 s) while it holds a lock. Its Done fires
// while it is cut off; etcd expires its lease, a Recover waiter takes the
// lock, and, while the partition lasts, the overlap is reported: lost-lock
// beside the new holder, proved alive on the holder's own host, only
// possible ("dead or cut off") from another. Healed, its fenced write is
// refused and its Unlock says the lock was lost.
func TestPartitionedHolder(t *testing.T) {
	h := newNetnsHost(t)
	dir := t.TempDir()
	srv, err := embedded.StartOn(filepath.Join(dir, "etcd"), h.here)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	e := &testEnv{t: t, srv: srv, cli: cli, run: "netns-" + fmt.Sprint(os.Getpid()), dir: dir}

	a := e.startIn(h.ns, "cmd", "host-a", envTTL+"=2")
	a.send("lock q")
	ta := token(t, a.expect("held q"))
	h.cut()
	t.Cleanup(h.heal)
	a.expect("done q") // its own clock: the lease may be gone
	e.waitFor("expiry of the cut-off holder's lease", func(s *Snapshot) bool { return lockOf(s, "q").Expired })

	b := e.start("cmd", "host-b", envPolicy+"=recover")
	b.send("lock q")
	if tb := token(t, b.expect("ownerdead q")); tb <= ta {
		t.Errorf("token %d after %d; want it larger", tb, ta)
	}
	// The partition lasts: both may be inside; reported now.
	for _, tc := range []struct {
		local string
		alive bool
		says  string
	}{
		{"host-a", true, "is still running"},
		{"reader", false, "may still be running"},
	} {
		r := e.diagnose(tc.local, 0, false)
		f, ok := findingOf(r, report.LostLock)
		if !ok {
			t.Fatalf("local host %s, a cut off: findings %+v; want lost-lock", tc.local, r.Findings)
		}
		if f.Holder.Host != "host-a" || f.Holder.Alive != tc.alive || !strings.Contains(f.Summary, tc.says) ||
			!strings.Contains(f.Summary, "dead or cut off from etcd") || !strings.Contains(f.Summary, fmt.Sprintf("pid %d on host-b", b.pid)) {
			t.Errorf("local host %s: lost-lock %+v: %q; want host-a's holder, alive %v, %q, dead or cut off, host-b holding it now", tc.local, f.Holder, f.Summary, tc.alive, tc.says)
		}
		if _, dead := findingOf(r, report.DeadHolder); dead {
			t.Errorf("local host %s: a dead-holder finding for a holder cut off: %+v", tc.local, r.Findings)
		}
		for _, p := range r.Processes {
			if p.Host == "host-a" && tc.local == "reader" && p.State != "expired" {
				t.Errorf("the cut-off process is %q from another host; want expired (not dead)", p.State)
			}
		}
	}
	h.heal()
	a.send("write q")
	a.expect("refused q")
	a.send("unlock q")
	a.expect("lost q")
	b.send("unlock q")
	b.expect("unlocked q")
}
