package cli

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/report"
)

// checkTokens checks the fencing tokens of the demo's report (a worker
// killed holding queue.wlock): the lock's details give the dead hold's
// token, the owner-died event carries the same token, every acquire and
// release event of the lock has a token no larger, acquires in order have
// increasing tokens; and the table shows them.
func checkTokens(t *testing.T, r *report.Report) {
	t.Helper()
	var token int64
	for _, l := range r.Locks {
		if l.Name != "queue.wlock" {
			continue
		}
		for _, f := range l.Facts {
			if f.Name == "token" && !f.Raw {
				token, _ = strconv.ParseInt(f.Value, 10, 64)
			}
		}
	}
	if token <= 0 {
		t.Fatalf("queue.wlock's facts give no token: %+v", r.Locks)
	}
	var died, last int64
	for _, e := range r.Events {
		if e.Lock != "queue.wlock" {
			continue
		}
		switch e.Kind {
		case "owner-died":
			died = e.Token
		case "acquire", "release", "recovered":
			if e.Token <= 0 || e.Token > token || (e.Kind == "acquire" && e.Token <= last) {
				t.Errorf("event %s #%d (after #%d); want a token above the last acquire's and at most the lock's %d", e.Kind, e.Token, last, token)
			}
			last = e.Token
		}
	}
	if died != token {
		t.Errorf("owner-died event token %d; want the dead hold's %d", died, token)
	}
	var b bytes.Buffer
	if err := r.Write(&b, report.Style{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("token %d", token), fmt.Sprintf("owner-died #%d", token)} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table report does not show %q:\n%s", want, b.String())
		}
	}
}
