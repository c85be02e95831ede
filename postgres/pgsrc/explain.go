package pgsrc

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lockwatch/lockwatch/postgres/internal/clientproc"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
	"github.com/lockwatch/lockwatch/reportcmd"
)

// Explain rewrites the findings on PostgreSQL's locks in PostgreSQL's
// words: sessions rather than goroutines, what each holder session is
// doing, and what ends it. Call it with the report of the last Read.
func (s *Source) Explain(r *report.Report) {
	s.mu.Lock()
	rd := s.last
	s.mu.Unlock()
	if rd == nil {
		return
	}
	// A session has no goroutines to ask a probe for: the report's note
	// that its "pid" is on host pg, where no probe can be asked, says
	// nothing a reader needs.
	notes := r.Notes[:0]
	for _, n := range r.Notes {
		if !(strings.HasPrefix(n, "pid ") && strings.HasSuffix(n, " is on "+Host+", where no probe can be asked: its stacks are from the records only")) {
			notes = append(notes, n)
		}
	}
	r.Notes = notes
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.LockKind != Kind {
			continue
		}
		switch f.Kind {
		case report.DeadHolder:
			if f.Holder == nil {
				continue
			}
			se := rd.sessions[f.Holder.PID]
			if se == nil || !se.end.Closed {
				continue
			}
			f.Summary = fmt.Sprintf("session %s holds %q, but its client is gone: %s; the server has not noticed, and %s",
				sessionName(f.Holder), f.Lock, closedText(se), sessionsWait(len(f.Waiters)))
			f.Next = recoveryFor(f.Holder.PID)
		case report.StuckHolder:
			if f.Holder == nil {
				continue
			}
			se := rd.sessions[f.Holder.PID]
			if se == nil {
				continue
			}
			f.Summary = fmt.Sprintf("session %s has held %q for %s while %s; it is %s",
				sessionName(f.Holder), f.Lock, time.Duration(f.Holder.For).Round(time.Millisecond), sessionsWait(len(f.Waiters)), se.stateSince())
			f.Doing = doing(se)
			f.Next = stuckNext(se)
		case report.Cycle:
			var b strings.Builder
			for _, st := range f.Cycle {
				fmt.Fprintf(&b, "session %s waits for %q -> ", sessionName(&st.Party), st.WaitsFor)
			}
			if len(f.Cycle) > 0 {
				b.WriteString("session " + sessionName(&f.Cycle[0].Party))
			}
			f.Summary = fmt.Sprintf("%d sessions wait for each other, a deadlock PostgreSQL has not broken yet: %s", len(f.Cycle), b.String())
			f.Next = fmt.Sprintf("PostgreSQL's deadlock detector cancels one of these sessions once it has waited deadlock_timeout (%s on this server; a session may set its own): to choose which, cancel one now with SELECT pg_cancel_backend(PID); take these locks in one order everywhere",
				cmpOr(rd.deadlockTimeout, "unknown"))
		}
	}
}

// ClientsOf are the client processes on this machine of a session of the
// last Read (its backend pid), as found then.
func (s *Source) ClientsOf(session int) []procid.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return nil
	}
	se := s.last.sessions[session]
	if se == nil {
		return nil
	}
	var out []procid.ID
	for _, c := range se.end.Procs {
		out = append(out, procid.ID{PID: c.PID, Start: c.Start})
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// sessionName is "pg/4242 [app]".
func sessionName(p *report.Party) string {
	s := reportcmd.Escape(p.Host) + "/" + strconv.Itoa(p.PID)
	if p.Role != "" {
		s += " [" + p.Role + "]"
	}
	return s
}

func sessionsWait(n int) string {
	switch n {
	case 0:
		return "no session waits for it"
	case 1:
		return "1 session waits for it"
	}
	return fmt.Sprintf("%d sessions wait for it", n)
}

// closedText says how the client's end was found closed.
func closedText(se *sess) string {
	return fmt.Sprintf("its end of the connection, %s, is closed on this machine (%s, %s, held by no process)", se.clientAddr(), se.end.State, se.end.NetNS)
}

func recoveryFor(pid int) string {
	return fmt.Sprintf("PostgreSQL ends the session only when TCP keepalive gives up on the client (tcp_keepalives_idle, 2 hours by default); end it now with SELECT pg_terminate_backend(%d), or with lockwatch attach --terminate-dead, which does so only while this proof holds", pid)
}

// doing is what a stuck holder session is doing.
func doing(se *sess) string {
	q := str(se.Query)
	switch str(se.State) {
	case "active":
		return fmt.Sprintf("running %q since %s", q, timeText(se.QueryStart))
	case "idle in transaction", "idle in transaction (aborted)":
		return fmt.Sprintf("%s; its last query was %q", se.stateSince(), q)
	case "idle":
		return fmt.Sprintf("idle outside a transaction (a session-level lock: pg_advisory_lock); its last query was %q", q)
	}
	return se.stateSince()
}

func timeText(t *time.Time) string {
	if t == nil {
		return "an unknown time"
	}
	return t.Local().Format("15:04:05.000")
}

// stuckNext is a stuck holder's next step.
func stuckNext(se *sess) string {
	client := "its client"
	if len(se.end.Procs) > 0 {
		client = fmt.Sprintf("its client, pid %d on this machine (processes table)", se.end.Procs[0].PID)
	} else if a := se.clientAddr(); a != "unknown" {
		client = "its client at " + a
	}
	switch str(se.State) {
	case "idle in transaction", "idle in transaction (aborted)":
		return fmt.Sprintf("%s has left its transaction open and runs nothing on it: see what the client is doing (a goroutine stuck between two statements, a forgotten Commit); SELECT pg_terminate_backend(%d) rolls the transaction back and frees the lock; idle_in_transaction_session_timeout makes PostgreSQL do so by itself", client, se.PID)
	case "idle":
		return fmt.Sprintf("%s holds a session-level lock it has not released: see what the client is doing; pg_advisory_unlock in the client, or SELECT pg_terminate_backend(%d), frees it", client, se.PID)
	}
	return fmt.Sprintf("the session is running a statement while it holds the lock: see why it takes so long (EXPLAIN it; %s); SELECT pg_cancel_backend(%d) cancels it", client, se.PID)
}

// Terminate ends, with pg_terminate_backend, the sessions of r's
// dead-holder findings whose client's end is still proved closed when
// looked at again now, and returns one line for each it ended or left.
// The session is named by its pid, start time and client address, so that
// no other session is ended.
func (s *Source) Terminate(ctx context.Context, r *report.Report) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rd := s.last
	if rd == nil {
		return nil
	}
	var out []string
	done := map[int]bool{}
	for _, f := range r.Findings {
		if f.Kind != report.DeadHolder || f.LockKind != Kind || f.Holder == nil || f.Holder.Host != Host || done[f.Holder.PID] {
			continue
		}
		se := rd.sessions[f.Holder.PID]
		if se == nil || !se.end.Closed || se.Addr == nil || se.Port == nil || se.Start == nil {
			continue
		}
		done[se.PID] = true
		a, err := netip.ParseAddr(*se.Addr)
		if err != nil {
			continue
		}
		// The proof, again: the client's end is still an orphaned socket.
		again := s.Clients([]clientproc.Conn{{Addr: a, Port: *se.Port, ServerPort: rd.server, Server: s.ServerAddr}})
		if len(again) != 1 || !again[0].Closed {
			out = append(out, fmt.Sprintf("lockwatch: left session %s/%d alone: its client's end %s is no longer proved closed", Host, se.PID, se.clientAddr()))
			continue
		}
		var ok bool
		err = s.q.QueryRow(ctx, `SELECT coalesce((SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE pid = $1 AND backend_start = $2 AND host(client_addr) = $3 AND client_port = $4), false)`,
			se.PID, *se.Start, *se.Addr, *se.Port).Scan(&ok)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("lockwatch: could not end session %s/%d: %v", Host, se.PID, err))
		case ok:
			out = append(out, fmt.Sprintf("lockwatch: ended session %s/%d with pg_terminate_backend (it held %s; its client's end %s is closed on this machine, %s, held by no process)",
				Host, se.PID, strings.Join(quoted(se.holds), ", "), se.clientAddr(), se.end.State))
		default:
			out = append(out, fmt.Sprintf("lockwatch: session %s/%d was not ended: it is gone already, or the role may not signal it (pg_signal_backend)", Host, se.PID))
		}
	}
	return out
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
