// Package pgsrc presents the lock waits of a PostgreSQL server to
// lockwatch's backend-neutral diagnosis (report): one query (one
// round trip) reads pg_locks, pg_stat_activity and pg_blocking_pids(), and
// Read turns them into a lockstate.Snapshot of locks of kind "postgres":
// advisory locks by their keys, rows, relations and transactions, each
// with the sessions that hold it and those that wait for it.
//
// A session is a party of the wait-for graph (host "pg", its backend pid,
// goroutine 1). Its client is looked for on this machine (package
// clientproc): a client process found is listed among the processes, and
// a session whose client's end of the connection is proved closed (the
// socket orphaned by the kernel) is dead, so the diagnosis reports its
// locks as dead-holder. Cycles are those PostgreSQL's deadlock detector
// has not broken yet; a session idle in transaction, holding a lock others
// wait for, is a stuck holder.
//
//	src := pgsrc.New(conn, "postgres://127.0.0.1:5432/app")
//	r, err := report.Diagnose(ctx, src.Sources(), report.Options{})
//	src.Explain(r) // PostgreSQL's own words in the findings' next steps
package pgsrc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/postgres/internal/clientproc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
)

// Kind is the kind of the locks a Source reads.
const Kind = "postgres"

// Host is the host name of sessions in the model: a session is not a
// process of this machine, and the host's /proc is never asked about it.
const Host = "pg"

// Host of prepared transactions that hold locks (no session does).
const preparedHost = "pg-prepared"

// Querier runs the lock-graph query: a *pgx.Conn.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Clients finds the client end of sessions on this machine;
// clientproc.Find.
type Clients func([]clientproc.Conn) []clientproc.End

// A Source reads one server's lock waits. It is safe for concurrent use;
// reads are serialized on its connection.
type Source struct {
	// Server names the server in the report: postgres://HOST:PORT/DB.
	Server string
	// Clients maps sessions to processes of this machine; nil: none.
	Clients Clients
	// ServerAddr is the server's address as this machine reaches it (the
	// connection's remote address), when it is TCP: a client's socket must
	// end there, or at an address the server listens on here.
	ServerAddr netip.AddrPort

	mu   sync.Mutex
	q    Querier
	last *read // the last Read's sessions, for Explain and Terminate
	// ends are the sessions' clients found gone, for the reads that
	// follow within clientReuse.
	ends map[clientKey]clientSeen
}

// clientReuse is how long a session's client proved gone serves the reads
// that follow (the report's confirming read comes moments after the first,
// and looking costs a read of the machine's TCP tables and of every
// descriptor of the sockets' owners): a client proved gone stays gone (the
// kernel never gives an orphaned socket back to a process). A client found
// alive is looked for again at every read: one that died since would
// otherwise be reported alive, a dead holder missed.
const clientReuse = time.Second

// clientKey is a session and its connection: the same key is the same
// connection.
type clientKey struct {
	id   procid.ID
	conn clientproc.Conn
}

type clientSeen struct {
	end clientproc.End
	at  time.Time
}

// New returns the Source of the server conn is connected to.
func New(q Querier, server string) *Source {
	return &Source{q: q, Server: server, Clients: clientproc.Find}
}

// Sources returns what report.Diagnose reads: s, and this machine's
// liveness for the client processes.
func (s *Source) Sources() report.Sources {
	return report.Sources{Locks: []lockstate.Source{s}, Host: report.LocalHost{}}
}

// ErrPrivilege: the role may not read what the report needs.
var ErrPrivilege = errors.New("pgsrc: the role may not read the lock graph")

// read is one read's sessions and their clients.
type read struct {
	taken           time.Time
	sessions        map[int]*sess
	server          int // the server's port
	deadlockTimeout string
	groups          []group // the model's locks', in order, while converting
}

// sess is a session and what was found of its client.
type sess struct {
	session
	id     procid.ID
	end    clientproc.End
	hidden bool // the role may not see its columns
	holds  []string
	text   map[bool]string // sessionText's, as holder and as waiter
}

// Read reads the lock graph in one round trip and turns it into the
// model. Its errors are pgx's (a *pgconn.PgError from the server).
func (s *Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var doc []byte
	if err := s.q.QueryRow(ctx, query, pgx.QueryExecModeSimpleProtocol).Scan(&doc); err != nil {
		return nil, err
	}
	a, err := parseAnswer(doc)
	if err != nil {
		return nil, err
	}
	snap, rd := s.convert(a)
	s.last = rd
	return snap, nil
}

// convert turns an answer into the model.
func (s *Source) convert(a *answer) (*lockstate.Snapshot, *read) {
	port, _ := strconv.Atoi(a.Port)
	rd := &read{taken: a.Now, sessions: make(map[int]*sess, len(a.Sessions)), server: port, deadlockTimeout: a.DeadlockTimeout}
	snap := &lockstate.Snapshot{Run: s.Server, Taken: a.Now}
	if snap.Taken.IsZero() {
		snap.Taken = time.Now()
	}
	for i := range a.Sessions {
		if i == MaxSessions {
			snap.Notes = append(snap.Notes, fmt.Sprintf("the server has more than %d sessions; the rest were not read", MaxSessions))
			break
		}
		se := &sess{session: a.Sessions[i]}
		se.id = procid.ID{Host: Host, PID: se.PID}
		if se.Start != nil {
			se.id.Start = uint64(se.Start.UnixMicro())
		}
		se.hidden = se.State == nil && str(se.Query) == "<insufficient privilege>"
		rd.sessions[se.PID] = se
	}
	locks := slices.DeleteFunc(a.Locks, func(r lockRow) bool { return !r.readable() })
	if n := len(a.Locks) - len(locks); n > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d rows of pg_locks were left out: they name no lock type, mode or session", n))
	}
	if len(locks) > MaxLocks {
		locks = locks[:MaxLocks]
		snap.Notes = append(snap.Notes, fmt.Sprintf("more than %d lock rows are awaited; the rest were not read", MaxLocks))
	}
	involved := map[procid.ID]bool{}
	s.model(snap, rd, locks, involved)
	// The advisory locks nobody waits for matter when their holder's
	// client is gone: the next to ask for one will wait for ever.
	var idle []lockRow
	bad := 0
	for i := 0; i < len(a.Advisory) && len(idle) <= MaxLocks; i++ {
		var n int
		idle, n = a.idleAdvisory(idle, &a.Advisory[i], MaxLocks+1)
		bad += n
	}
	if len(idle) > MaxLocks {
		idle = idle[:MaxLocks]
		snap.Notes = append(snap.Notes, fmt.Sprintf("more than %d advisory locks are held; the rest were not read", MaxLocks))
	}
	if bad > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d advisory locks awaited by nobody were left out: their keys are not numbers", bad))
	}
	pids := map[int]bool{}
	for id := range involved {
		if id.Host == Host {
			pids[id.PID] = true
		}
	}
	for _, r := range idle {
		pids[pidOf(r)] = true
	}
	s.clients(rd, pids)
	var dead []lockRow
	for _, r := range idle {
		if se := rd.sessions[pidOf(r)]; se != nil && se.end.Closed {
			dead = append(dead, r)
		}
	}
	s.model(snap, rd, dead, involved)
	if n := len(idle) - len(dead); n > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d advisory locks are held, awaited by nobody, by sessions whose clients are not proved gone: not listed", n))
	}
	s.processes(snap, rd, involved)
	hidden := 0
	for _, p := range snap.Processes {
		if se := rd.sessions[p.PID]; p.Host == Host && se != nil && se.hidden {
			hidden++
		}
	}
	if hidden > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("role %q lacks pg_read_all_stats: %d of the sessions here are other roles' and show no state, client address, start time or query, so their clients are not looked for on this machine (no dead-holder proof for them), how long they have held their locks is not known (no stuck-holder for them), and their queries are not shown; grant it with: GRANT pg_read_all_stats TO %s",
			a.User, hidden, pgx.Identifier{a.User}.Sanitize()))
	}
	// The locks' facts, once what is known of the clients is.
	for i := range snap.Locks {
		l := &snap.Locks[i]
		l.Facts.Extra = facts(rd.groups[i], rd)
		l.Recovery = recovery(*l, rd)
	}
	rd.groups = nil
	for _, d := range a.Deadlocks {
		snap.Notes = append(snap.Notes, fmt.Sprintf("PostgreSQL's deadlock detector has broken %d deadlocks in database %q since its statistics were reset, each after deadlock_timeout (%s on this server; a session may set its own), cancelling one session of each (the server log says which: \"deadlock detected\")",
			d.N, d.DB, a.DeadlockTimeout))
	}
	return snap, rd
}

// readable reports whether a lock row names what the model needs: a lock
// type, a mode, and a session or a prepared transaction
// (virtualtransaction "-1/XID"). The server's rows always do.
func (r *lockRow) readable() bool {
	if r.Type == "" || r.Mode == "" {
		return false
	}
	if r.PID != nil {
		return true
	}
	_, x, ok := strings.Cut(str(r.VXact), "/")
	n, err := strconv.Atoi(x)
	return ok && err == nil && n > 0
}

// group is one lock of the model: an object, and the mode its waiters ask
// for when they ask for several.
type group struct {
	name    string
	holders []lockRow
	waiters []lockRow
}

// model builds the model's locks: for each object, one lock per mode its
// waiters ask for, held by the sessions whose granted modes conflict with
// it, so that each waiter waits exactly for the holders that block it (a
// waiter for writing, in the model, waits for every holder).
func (s *Source) model(snap *lockstate.Snapshot, rd *read, rows []lockRow, involved map[procid.ID]bool) {
	byObj := map[string][]lockRow{}
	var order []string
	for _, r := range rows {
		o := r.object()
		if _, ok := byObj[o]; !ok {
			order = append(order, o)
		}
		byObj[o] = append(byObj[o], r)
	}
	slices.Sort(order)
	for _, o := range order {
		for _, g := range groups(o, byObj[o], rd) {
			l := lockstate.Lock{Kind: Kind, Name: g.name}
			seen := map[procid.ID]bool{}
			for _, h := range g.holders {
				id, since := s.party(rd, h, snap)
				if seen[id] {
					continue
				}
				seen[id] = true
				involved[id] = true
				l.Holders = append(l.Holders, lockstate.Holder{Party: lockstate.Party{ID: id, Goroutine: 1}, Since: since, Read: sharedOnly(g.holders, pidOf(h))})
				if se := rd.sessions[pidOf(h)]; se != nil {
					se.holds = append(se.holds, g.name)
				}
			}
			for _, w := range g.waiters {
				id, _ := s.party(rd, w, snap)
				involved[id] = true
				since := time.Time{}
				if w.WaitStart != nil {
					since = *w.WaitStart
				} else if se := rd.sessions[pidOf(w)]; se != nil && se.QueryStart != nil {
					since = *se.QueryStart
				}
				l.Waiters = append(l.Waiters, lockstate.Waiter{Party: lockstate.Party{ID: id, Goroutine: 1}, Since: since})
			}
			slices.SortStableFunc(l.Waiters, func(a, b lockstate.Waiter) int { return a.Since.Compare(b.Since) })
			snap.Locks = append(snap.Locks, l)
			rd.groups = append(rd.groups, g)
		}
	}
}

// sharedOnly reports whether every mode session pid holds among rows is
// a share mode (AccessShareLock, RowShareLock, ShareLock: several sessions
// hold it at once), so that the report shows it as a reader. Waiters are
// never marked readers: each group's holders are already exactly those
// that block its waiters.
func sharedOnly(rows []lockRow, pid int) bool {
	n := 0
	for _, r := range rows {
		if pidOf(r) != pid || pid == 0 {
			continue
		}
		n++
		if !strings.Contains(r.Mode, "Share") || strings.Contains(r.Mode, "Exclusive") {
			return false
		}
	}
	return n > 0
}

// processes lists the sessions and prepared transactions involved, then
// the client processes of those sessions found on this machine.
func (s *Source) processes(snap *lockstate.Snapshot, rd *read, involved map[procid.ID]bool) {
	seen := map[procid.ID]bool{}
	var clients []lockstate.Process
	for _, id := range sortedIDs(involved) {
		if id.Host == preparedHost {
			snap.Processes = append(snap.Processes, lockstate.Process{ID: id, Role: "prepared transaction", Status: procid.Alive,
				Command: "COMMIT PREPARED or ROLLBACK PREPARED ends it (pg_prepared_xacts names it)"})
			continue
		}
		se := rd.sessions[id.PID]
		if se == nil {
			// A lock row of a session that pg_stat_activity did not list
			// (it ended between the two reads): alive as far as we know.
			snap.Processes = append(snap.Processes, lockstate.Process{ID: id, Command: "session (ended while read?)", Status: procid.Alive})
			continue
		}
		p := lockstate.Process{ID: id, Role: str(se.App), Status: procid.Alive, Command: se.describe()}
		if se.Start != nil {
			p.Started = *se.Start
		}
		if se.end.Closed {
			// The session's client can never end its transaction: it is
			// dead to the locks it holds, though the server has not
			// noticed yet.
			p.Status = procid.Gone
		}
		snap.Processes = append(snap.Processes, p)
		for _, c := range se.end.Procs {
			cid := procid.ID{PID: c.PID, Start: c.Start}
			if !seen[cid] {
				seen[cid] = true
				clients = append(clients, lockstate.Process{ID: cid})
			}
		}
	}
	snap.Processes = append(snap.Processes, clients...)
}

func sortedIDs(m map[procid.ID]bool) []procid.ID {
	out := make([]procid.ID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b procid.ID) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), a.PID-b.PID)
	})
	return out
}

func pidOf(r lockRow) int {
	if r.PID == nil {
		return 0
	}
	return *r.PID
}

// groups splits an object's rows into the model's locks.
func groups(obj string, rows []lockRow, rd *read) []group {
	var held, waiting []lockRow
	for _, r := range rows {
		if r.Granted {
			held = append(held, r)
		} else {
			waiting = append(waiting, r)
		}
	}
	if len(waiting) == 0 {
		return []group{{name: obj, holders: held}}
	}
	var wanted []string
	for _, w := range waiting {
		if !slices.Contains(wanted, w.Mode) {
			wanted = append(wanted, w.Mode)
		}
	}
	slices.SortFunc(wanted, func(a, b string) int { return slices.Index(modes, a) - slices.Index(modes, b) })
	var out []group
	for _, m := range wanted {
		g := group{name: obj}
		if len(wanted) > 1 {
			g.name = obj + " " + m
		}
		blockers := map[int]bool{}
		known := true
		for _, w := range waiting {
			if w.Mode != m {
				continue
			}
			g.waiters = append(g.waiters, w)
			se := rd.sessions[pidOf(w)]
			if se == nil || se.Blockers == nil {
				known = false
				continue
			}
			for _, b := range se.Blockers {
				blockers[b] = true
			}
		}
		for _, h := range held {
			// A holder in a mode that conflicts blocks the waiters; PostgreSQL's
			// own pg_blocking_pids() has the last word when it was read (it
			// knows parallel groups), except for prepared transactions,
			// which it names by no pid.
			if !conflicts(h.Mode, m) {
				continue
			}
			if known && h.PID != nil && !blockers[*h.PID] {
				continue
			}
			g.holders = append(g.holders, h)
		}
		out = append(out, g)
	}
	return out
}

// party returns the identity of a lock row's session (or prepared
// transaction) and since when it has held its locks.
func (s *Source) party(rd *read, r lockRow, snap *lockstate.Snapshot) (procid.ID, time.Time) {
	if r.PID == nil {
		// A prepared transaction: virtualtransaction "-1/XID".
		_, x, _ := strings.Cut(str(r.VXact), "/")
		n, _ := strconv.Atoi(x)
		return procid.ID{Host: preparedHost, PID: n}, time.Time{}
	}
	se := rd.sessions[*r.PID]
	if se == nil {
		return procid.ID{Host: Host, PID: *r.PID}, time.Time{}
	}
	switch {
	case se.Xact != nil:
		return se.id, *se.Xact
	case se.Change != nil:
		return se.id, *se.Change
	}
	return se.id, time.Time{}
}

// describe says what a session is, for the processes table.
func (se *sess) describe() string {
	if se.hidden {
		return fmt.Sprintf("session of %s (state hidden: pg_read_all_stats)", str(se.User))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%s", str(se.User), str(se.DB))
	fmt.Fprintf(&b, ", %s", se.stateSince())
	fmt.Fprintf(&b, ", client %s", se.clientText())
	return b.String()
}

// stateSince is "idle in transaction since 14:02:03.123".
func (se *sess) stateSince() string {
	st := cmp.Or(str(se.State), "state unknown")
	if se.Change != nil {
		st += " since " + se.Change.Local().Format("15:04:05.000")
	}
	return st
}

// clientAddr is the session's client address as the server sees it.
func (se *sess) clientAddr() string {
	switch {
	case se.Addr != nil && se.Port != nil:
		a, err := netip.ParseAddr(*se.Addr)
		if err != nil {
			return *se.Addr
		}
		return netip.AddrPortFrom(a, uint16(*se.Port)).String()
	case se.Port != nil && *se.Port == -1:
		return "unix socket"
	}
	return "unknown"
}

// clientText is the client address and what was found of its process.
func (se *sess) clientText() string {
	addr := se.clientAddr()
	e := se.end
	switch {
	case e.Closed:
		return fmt.Sprintf("%s gone: its end of the connection is closed on this machine (%s in %s, held by no process)", addr, e.State, e.NetNS)
	case len(e.Procs) > 0:
		pids := make([]string, len(e.Procs))
		for i, p := range e.Procs {
			pids[i] = strconv.Itoa(p.PID)
		}
		return fmt.Sprintf("%s = pid %s on this machine", addr, strings.Join(pids, " and "))
	}
	return addr
}

// clients looks for the clients of the sessions pids on this machine.
func (s *Source) clients(rd *read, pids map[int]bool) {
	if s.Clients == nil {
		return
	}
	var conns []clientproc.Conn
	var who []*sess
	now := time.Now()
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		se := rd.sessions[pid]
		if se == nil || se.hidden || se.Port == nil {
			continue
		}
		c := clientproc.Conn{ServerPort: rd.server, Server: s.ServerAddr, Backend: se.PID}
		switch {
		case se.Addr != nil:
			a, err := netip.ParseAddr(*se.Addr)
			if err != nil {
				continue
			}
			c.Addr, c.Port = a, *se.Port
		case *se.Port == -1:
		default:
			continue
		}
		if seen, ok := s.ends[clientKey{se.id, c}]; ok && seen.end.Closed && now.Sub(seen.at) < clientReuse && !now.Before(seen.at) {
			se.end = seen.end
			continue
		}
		conns = append(conns, c)
		who = append(who, se)
	}
	next := make(map[clientKey]clientSeen, len(s.ends)+len(conns))
	for k, seen := range s.ends {
		if now.Sub(seen.at) < clientReuse && !now.Before(seen.at) {
			next[k] = seen
		}
	}
	if len(conns) > 0 {
		for i, e := range s.Clients(conns) {
			who[i].end = e
			if e.Closed {
				next[clientKey{who[i].id, conns[i]}] = clientSeen{end: e, at: now}
			}
		}
	}
	s.ends = next
}

// facts are a lock's facts: for each holder its mode and session, for
// each waiter the mode it wants and its client. Parts of a value are
// separated by semicolons (the report joins facts with commas).
func facts(g group, rd *read) []lockstate.Fact {
	var out []lockstate.Fact
	for _, h := range g.holders {
		out = append(out, lockstate.Fact{Name: "held by " + partyName(h), Value: h.Mode + "; " + sessionText(rd, pidOf(h), true)})
	}
	for _, w := range g.waiters {
		v := "wants " + w.Mode
		if se := rd.sessions[pidOf(w)]; se != nil {
			var behind []string
			for _, b := range se.Blockers {
				if !slices.ContainsFunc(g.holders, func(h lockRow) bool { return pidOf(h) == b }) {
					behind = append(behind, strconv.Itoa(b))
				}
			}
			if len(behind) > 0 {
				v += " (also queued behind session " + strings.Join(behind, " and ") + ", which asked first)"
			}
		}
		out = append(out, lockstate.Fact{Name: "awaited by " + partyName(w), Value: v + "; " + sessionText(rd, pidOf(w), false)})
	}
	return out
}

func partyName(r lockRow) string {
	if r.PID == nil {
		return "prepared transaction " + str(r.VXact)
	}
	return Host + "/" + strconv.Itoa(*r.PID)
}

// sessionText is a session's details: its state and since when, its
// client, application, and (for a holder: what it runs or ran last) its
// query.
func sessionText(rd *read, pid int, holder bool) string {
	se := rd.sessions[pid]
	if se == nil {
		return "not in pg_stat_activity"
	}
	// A session holding many locks is described once.
	if t := se.text[holder]; t != "" {
		return t
	}
	t := describeFully(se, holder)
	if se.text == nil {
		se.text = map[bool]string{}
	}
	se.text[holder] = t
	return t
}

func describeFully(se *sess, holder bool) string {
	if se.hidden {
		return fmt.Sprintf("user %s; state, client and query hidden (no pg_read_all_stats)", str(se.User))
	}
	var b strings.Builder
	b.WriteString(se.stateSince())
	if holder && se.Xact != nil {
		fmt.Fprintf(&b, " (transaction since %s)", se.Xact.Local().Format("15:04:05.000"))
	}
	fmt.Fprintf(&b, "; client %s", se.clientText())
	if app := str(se.App); app != "" {
		fmt.Fprintf(&b, "; application %q", app)
	}
	fmt.Fprintf(&b, "; %s@%s", str(se.User), str(se.DB))
	if q := str(se.Query); holder && q != "" {
		fmt.Fprintf(&b, "; query %q", q)
	}
	return b.String()
}

// recovery is what a dead-holder's next step says for a lock: end the
// session whose client is gone.
func recovery(l lockstate.Lock, rd *read) string {
	for _, h := range l.Holders {
		if se := rd.sessions[h.PID]; h.Host == Host && se != nil && se.end.Closed {
			return recoveryFor(h.PID)
		}
	}
	return ""
}
