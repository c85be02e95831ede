package pgsrc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/postgres/internal/clientproc"
	"github.com/lockwatch/lockwatch/procid"
)

func ptr[T any](v T) *T { return &v }

// TestObject: advisory keys read back as the client gave them, bigint
// (negative too) or two ints; other kinds of lock by their object.
func TestObject(t *testing.T) {
	db := ptr("app")
	tests := []struct {
		name string
		row  lockRow
		want string
	}{
		{"bigint key", lockRow{Type: "advisory", DB: db, ClassID: ptr[int64](0), ObjID: ptr[int64](42), ObjSubID: ptr[int64](1)}, "app/advisory(42)"},
		{"negative bigint key", lockRow{Type: "advisory", DB: db, ClassID: ptr[int64](0xffffffff), ObjID: ptr[int64](0xfffffffe), ObjSubID: ptr[int64](1)}, "app/advisory(-2)"},
		{"large bigint key", lockRow{Type: "advisory", DB: db, ClassID: ptr[int64](1), ObjID: ptr[int64](0), ObjSubID: ptr[int64](1)}, "app/advisory(4294967296)"},
		{"two int keys", lockRow{Type: "advisory", DB: db, ClassID: ptr[int64](7), ObjID: ptr[int64](0xffffffff), ObjSubID: ptr[int64](2)}, "app/advisory(7,-1)"},
		{"relation", lockRow{Type: "relation", DB: db, Rel: ptr("public.jobs")}, "app/relation public.jobs"},
		{"row", lockRow{Type: "tuple", DB: db, Rel: ptr("jobs"), Page: ptr[int64](0), Tuple: ptr[int64](3)}, "app/row jobs (0,3)"},
		{"transaction", lockRow{Type: "transactionid", XID: ptr("1234")}, "transaction 1234"},
		{"database by oid", lockRow{Type: "relation", DBOid: ptr[int64](16384), Rel: ptr("16385")}, "db16384/relation 16385"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.row.object(); got != tt.want {
				t.Errorf("object() = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestConflicts: a few rows of PostgreSQL's conflict table, and unknown
// modes conflict with everything (a holder is never left out).
func TestConflicts(t *testing.T) {
	tests := []struct {
		held, want string
		conflict   bool
	}{
		{"AccessShareLock", "AccessShareLock", false},
		{"AccessShareLock", "AccessExclusiveLock", true},
		{"RowExclusiveLock", "ShareLock", true},
		{"RowExclusiveLock", "RowExclusiveLock", false},
		{"ShareLock", "ShareLock", false},
		{"ShareUpdateExclusiveLock", "ShareUpdateExclusiveLock", true},
		{"ExclusiveLock", "AccessShareLock", false},
		{"ExclusiveLock", "ExclusiveLock", true},
		{"FutureLock", "AccessShareLock", true},
	}
	for _, tt := range tests {
		if got := conflicts(tt.held, tt.want); got != tt.conflict {
			t.Errorf("conflicts(%s, %s) = %v; want %v", tt.held, tt.want, got, tt.conflict)
		}
	}
}

// TestGroups: waiters of one table in two modes are two locks of the
// model, each held only by the sessions that block that mode, so that no
// waiter is made to wait for a holder that does not block it.
func TestGroups(t *testing.T) {
	now := time.Now()
	rel := func(pid int, mode string, granted bool) lockRow {
		return lockRow{Type: "relation", DB: ptr("app"), Rel: ptr("jobs"), PID: ptr(pid), Mode: mode, Granted: granted, WaitStart: map[bool]*time.Time{false: &now}[granted]}
	}
	a := &answer{Now: now, Port: "5432", Sessions: []session{{PID: 1}, {PID: 2}, {PID: 3, Blockers: []int{2}}, {PID: 4, Blockers: []int{1, 2}}},
		Locks: []lockRow{rel(1, "AccessShareLock", true), rel(2, "RowExclusiveLock", true), rel(3, "ShareLock", false), rel(4, "AccessExclusiveLock", false)}}
	s := &Source{Server: "test"}
	snap, _ := s.convert(a)
	got := map[string][]int{}
	for _, l := range snap.Locks {
		for _, h := range l.Holders {
			got[l.Name] = append(got[l.Name], h.PID)
		}
		slices.Sort(got[l.Name])
	}
	want := map[string][]int{"app/relation jobs ShareLock": {2}, "app/relation jobs AccessExclusiveLock": {1, 2}}
	for name, pids := range want {
		if !slices.Equal(got[name], pids) {
			t.Errorf("lock %q held by %v; want %v (all: %v)", name, got[name], pids, got)
		}
	}
	if len(snap.Locks) != 2 {
		t.Errorf("%d locks; want 2: %+v", len(snap.Locks), snap.Locks)
	}
	for _, l := range snap.Locks {
		if l.Kind != Kind || len(l.Waiters) != 1 || l.Waiters[0].Goroutine != 1 || l.Waiters[0].Host != Host || l.Waiters[0].Read {
			t.Errorf("lock %+v; want kind %s, one waiter, a session party, not a reader", l, Kind)
		}
		// A share mode's holder is a reader; RowExclusiveLock's is not.
		for _, h := range l.Holders {
			if h.Read != (h.PID == 1) {
				t.Errorf("lock %q: holder %d read %v; want only the AccessShareLock's (1) a reader", l.Name, h.PID, h.Read)
			}
		}
	}
}

// BenchmarkConvert is Read's work on the answer of a server with 1,000
// sessions and 10,000 advisory locks held (BenchmarkAttach's), 100 of
// them awaited, without the server and without looking for the clients.
func BenchmarkConvert(b *testing.B) {
	now := time.Now()
	a := &answer{Now: now, Port: "5432", Databases: map[string]string{"16384": "app"}}
	for i := 0; i < 1000; i++ {
		a.Sessions = append(a.Sessions, session{PID: 10000 + i, DB: ptr("app"), User: ptr("u"), App: ptr("bench"), Addr: ptr("127.0.0.1"), Port: ptr(40000 + i),
			Start: &now, Change: &now, State: ptr("idle"), Query: ptr("SELECT pg_advisory_lock(k) FROM generate_series($1, $2) k"), Type: ptr("client backend")})
		for j := 0; j < 10; j++ {
			if i < 100 && j == 0 { // awaited by session 10999-i
				a.Locks = append(a.Locks,
					lockRow{Type: "advisory", DB: ptr("app"), ClassID: ptr[int64](0), ObjID: ptr(int64(i * 10)), ObjSubID: ptr[int64](1), PID: ptr(10000 + i), Mode: "ExclusiveLock", Granted: true},
					lockRow{Type: "advisory", DB: ptr("app"), ClassID: ptr[int64](0), ObjID: ptr(int64(i * 10)), ObjSubID: ptr[int64](1), PID: ptr(10999 - i), Mode: "ExclusiveLock", WaitStart: &now})
				continue
			}
			if len(a.Advisory) == 0 || a.Advisory[len(a.Advisory)-1].PID != int64(10000+i) {
				a.Advisory = append(a.Advisory, advisoryGroup{PID: int64(10000 + i), DB: 16384, ObjSubID: 1})
			}
			g := &a.Advisory[len(a.Advisory)-1]
			g.ObjIDs = strings.TrimPrefix(g.ObjIDs+" "+strconv.Itoa(i*10+j), " ")
		}
	}
	s := &Source{Server: "bench"}
	for b.Loop() {
		snap, _ := s.convert(a)
		if len(snap.Locks) != 100 {
			b.Fatalf("%d locks; want the 100 awaited", len(snap.Locks))
		}
	}
}

// TestIdleAdvisory: the advisory locks nobody waits for come a group per
// session and kind of key, their objids in one string; a session whose
// client is proved gone has each of its locks listed, under its key, and
// the others are counted. A key that is not a number is left out and said.
func TestIdleAdvisory(t *testing.T) {
	doc := `{"now":"2026-12-07T15:09:25Z","port":"5432","user":"u",
	  "sessions":[[10,null,"app",null,null,"127.0.0.1",5000,null,null,null,null,"idle"],
	              [11,null,"app",null,null,"127.0.0.1",5001,null,null,null,null,"idle"]],
	  "advisory":[[10,5,0,1,0,"7 8 9"],[10,5,4294967295,1,1,"4294967294"],[10,5,3,2,0,"4"],[11,5,0,1,0,"1 2 3 x"]],
	  "databases":{"5":"app"}}`
	a, err := parseAnswer([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := &Source{Server: "test", Clients: func(cs []clientproc.Conn) []clientproc.End {
		ends := make([]clientproc.End, len(cs))
		for i, c := range cs {
			if c.Port == 5000 {
				ends[i] = clientproc.End{Found: true, Closed: true, State: "FIN-WAIT-2"}
			}
		}
		return ends
	}}
	snap, _ := s.convert(a)
	var names []string
	for _, l := range snap.Locks {
		names = append(names, l.Name)
		if len(l.Holders) != 1 || l.Holders[0].PID != 10 {
			t.Errorf("lock %q: holders %+v; want session 10", l.Name, l.Holders)
		}
	}
	slices.Sort(names)
	want := []string{"app/advisory(-2)", "app/advisory(3,4)", "app/advisory(7)", "app/advisory(8)", "app/advisory(9)"}
	if !slices.Equal(names, want) {
		t.Errorf("locks %q; want %q", names, want)
	}
	for _, note := range []string{"3 advisory locks are held, awaited by nobody, by sessions whose clients are not proved gone: not listed",
		"1 advisory locks awaited by nobody were left out: their keys are not numbers"} {
		if !slices.Contains(snap.Notes, note) {
			t.Errorf("notes %q; want %q", snap.Notes, note)
		}
	}
}

// TestSessionArray: a session comes as an array of pg_stat_activity's
// fields in the query's order; null is a field the role may not see.
func TestSessionArray(t *testing.T) {
	var s session
	doc := `[42,7,"app","alice","migrate","10.0.0.5",5000,"2026-12-07T15:00:00Z","2026-12-07T15:01:00Z",
	  "2026-12-07T15:02:00Z","2026-12-07T15:03:00Z","idle in transaction","Lock","advisory","client backend","SELECT 1",[3,4]]`
	if err := json.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	at := func(m int) string { return time.Date(2026, 12, 7, 15, m, 0, 0, time.UTC).Format(time.RFC3339) }
	got := fmt.Sprint(s.PID, *s.Leader, *s.DB, *s.User, *s.App, *s.Addr, *s.Port, s.Start.UTC().Format(time.RFC3339), s.Xact.UTC().Format(time.RFC3339),
		s.QueryStart.UTC().Format(time.RFC3339), s.Change.UTC().Format(time.RFC3339), *s.State, *s.WaitType, *s.Wait, *s.Type, *s.Query, s.Blockers)
	want := fmt.Sprint(42, 7, "app", "alice", "migrate", "10.0.0.5", 5000, at(0), at(1), at(2), at(3), "idle in transaction", "Lock", "advisory", "client backend", "SELECT 1", []int{3, 4})
	if got != want {
		t.Errorf("session %s; want %s", got, want)
	}
	s = session{}
	if err := json.Unmarshal([]byte(`[43,null,null,null,null,null,null,null,null,null,null,null,null,null,null,"<insufficient privilege>",null]`), &s); err != nil {
		t.Fatal(err)
	}
	if s.PID != 43 || s.Leader != nil || s.State != nil || s.Start != nil || s.Blockers != nil || str(s.Query) != "<insufficient privilege>" {
		t.Errorf("hidden session %+v; want its fields null but the pid and the query", s)
	}
}

// TestClientAliveLookedForAgain: a session's client found alive is looked
// for again at the next read, however soon (it may have died since: a
// dead holder must not be missed); one proved gone is not (it cannot come
// back).
func TestClientAliveLookedForAgain(t *testing.T) {
	doc := `{"now":"2026-12-07T15:09:25Z","port":"5432","user":"u",
	  "sessions":[[10,null,"app",null,null,"127.0.0.1",5000,null,null,null,null,"idle in transaction"],
	              [11,null,"app",null,null,null,null,null,null,null,null,"active","Lock",null,null,null,[10]]],
	  "locks":[{"type":"advisory","db":"app","dboid":5,"classid":0,"objid":42,"objsubid":1,"pid":10,"mode":"ExclusiveLock","granted":true},
	           {"type":"advisory","db":"app","dboid":5,"classid":0,"objid":42,"objsubid":1,"pid":11,"mode":"ExclusiveLock","granted":false,"waitstart":"2026-12-07T15:09:13Z"}],
	  "databases":{"5":"app"}}`
	a, err := parseAnswer([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	looks := 0
	s := &Source{Server: "test", Clients: func(cs []clientproc.Conn) []clientproc.End {
		looks++
		ends := make([]clientproc.End, len(cs))
		for i := range cs {
			if looks == 1 {
				ends[i] = clientproc.End{Found: true, State: "ESTABLISHED", Procs: []clientproc.Proc{{PID: 4242}}}
			} else {
				ends[i] = clientproc.End{Found: true, Closed: true, State: "FIN-WAIT-2"}
			}
		}
		return ends
	}}
	status := func() procid.Status {
		snap, _ := s.convert(a)
		for _, p := range snap.Processes {
			if p.ID.PID == 10 {
				return p.Status
			}
		}
		t.Fatalf("session 10 not among the processes %+v", snap.Processes)
		return 0
	}
	for i, want := range []procid.Status{procid.Alive, procid.Gone, procid.Gone} {
		if got := status(); got != want {
			t.Errorf("read %d: session 10 is %v; want %v (its client alive at the first read, gone after)", i+1, got, want)
		}
	}
	if looks != 2 {
		t.Errorf("the client was looked for %d times; want 2 (again after alive, not after gone)", looks)
	}
}
