package pgsrc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bounds on what one read takes from a server, so that a server with a
// million locks is read in bounded memory: beyond them the report says
// that the rest was not read.
const (
	// MaxSessions bounds the sessions read.
	MaxSessions = 20000
	// MaxLocks bounds the lock rows read: advisory locks, locks awaited and
	// the locks held on the objects awaited.
	MaxLocks = 100000
	// MaxQuery bounds each session's query text, in characters.
	MaxQuery = 512
)

// query reads the lock graph in one statement, so in one round trip: the
// sessions of pg_stat_activity (with pg_blocking_pids() for those that
// wait for a lock), every row of pg_locks of an object somebody waits for,
// the advisory locks nobody waits for (compact, a group per session and
// kind of key: [pid, database, classid, objsubid, shared, "objid objid
// ..."], since a server may hold thousands and only those of a session
// whose client is gone are reported: as a string of numbers they cost the
// server a third of what one JSON array per lock costs), and what the
// report says about the server. pg_locks is read once (a CTE referred to
// several times is computed once). The answer is one JSON document; the
// server escapes it.
var query = fmt.Sprintf(`WITH l AS (SELECT locktype, database, relation, page, tuple, virtualxid, transactionid, classid, objid, objsubid,
    virtualtransaction, pid, mode, granted, waitstart,
    CASE WHEN locktype <> 'advisory' THEN locktype || '/' || coalesce(database::text, '') || '/' || coalesce(relation::text, '') || '/' ||
      coalesce(page::text, '') || '/' || coalesce(tuple::text, '') || '/' || coalesce(virtualxid, '') || '/' ||
      coalesce(transactionid::text, '') || '/' || coalesce(classid::text, '') || '/' || coalesce(objid::text, '') || '/' ||
      coalesce(objsubid::text, '') END AS object
  FROM pg_locks WHERE mode <> 'SIReadLock'),
awaited AS (SELECT DISTINCT object, database, classid, objid, objsubid, locktype = 'advisory' AS advisory FROM l WHERE NOT granted),
keep AS (SELECT * FROM l WHERE object IN (SELECT object FROM awaited WHERE NOT advisory)
    OR (locktype = 'advisory' AND (database, classid, objid, objsubid) IN (SELECT database, classid, objid, objsubid FROM awaited WHERE advisory))
  LIMIT %d),
here AS (SELECT oid FROM pg_database WHERE datname = current_database())
SELECT json_build_object(
  'now', now(),
  'self', pg_backend_pid(),
  'port', current_setting('port'),
  'user', current_user,
  'stats', pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
  'deadlock_timeout', current_setting('deadlock_timeout'),
  'deadlocks', (SELECT coalesce(json_agg(json_build_object('db', datname, 'n', deadlocks)), '[]') FROM pg_stat_database WHERE deadlocks > 0),
  'sessions', (SELECT coalesce(json_agg(json_build_array(
      a.pid, a.leader_pid, a.datname, a.usename, a.application_name,
      host(a.client_addr), a.client_port, a.backend_start, a.xact_start,
      a.query_start, a.state_change, a.state, a.wait_event_type,
      a.wait_event, a.backend_type, left(a.query, %d),
      CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END)), '[]')
    FROM (SELECT * FROM pg_stat_activity WHERE pid <> pg_backend_pid() LIMIT %d) a),
  'databases', (SELECT json_object_agg(oid::text, datname) FROM pg_database),
  'advisory', (SELECT coalesce(json_agg(json_build_array(pid, database::bigint, classid::bigint, objsubid, shared, objids)), '[]')
    FROM (SELECT pid, database, classid, objsubid, (mode = 'ShareLock')::int AS shared, string_agg(objid::text, ' ') AS objids
      FROM (SELECT * FROM l WHERE locktype = 'advisory' AND granted AND (database, classid, objid, objsubid) NOT IN
        (SELECT database, classid, objid, objsubid FROM awaited WHERE advisory) LIMIT %d) i
      GROUP BY pid, database, classid, objsubid, shared) g),
  'locks', (SELECT coalesce(json_agg(json_build_object(
      'type', k.locktype, 'db', d.datname, 'dboid', k.database::bigint,
      'rel', CASE WHEN k.relation IS NULL THEN NULL
                  WHEN k.database IN (0, (SELECT oid FROM here)) THEN k.relation::regclass::text
                  ELSE k.relation::text END,
      'page', k.page, 'tuple', k.tuple, 'vxid', k.virtualxid, 'xid', k.transactionid::text,
      'classid', k.classid::bigint, 'objid', k.objid::bigint, 'objsubid', k.objsubid,
      'vxact', k.virtualtransaction, 'pid', k.pid, 'mode', k.mode, 'granted', k.granted, 'waitstart', k.waitstart)), '[]')
    FROM keep k LEFT JOIN pg_database d ON d.oid = k.database)
)::text`, MaxLocks+1, MaxQuery, MaxSessions+1, MaxLocks+1)

// answer is the query's JSON document.
type answer struct {
	Now             time.Time   `json:"now"`
	Self            int         `json:"self"`
	Port            string      `json:"port"`
	User            string      `json:"user"`
	Stats           bool        `json:"stats"`
	DeadlockTimeout string      `json:"deadlock_timeout"`
	Deadlocks       []deadlocks `json:"deadlocks"`
	Sessions        []session   `json:"sessions"`
	Locks           []lockRow   `json:"locks"`
	// Advisory are the advisory locks nobody waits for, a group per
	// session and kind of key.
	Advisory  []advisoryGroup   `json:"advisory"`
	Databases map[string]string `json:"databases"`
}

// advisoryGroup is advisory locks a session holds and nobody waits for,
// of one database, classid, objsubid and mode, as the query sends them:
// [pid, database, classid, objsubid, 1 if shared, "objid objid ..."].
type advisoryGroup struct {
	PID, DB, ClassID, ObjSubID, Shared int64
	ObjIDs                             string
}

func (g *advisoryGroup) UnmarshalJSON(b []byte) error {
	if g.decode(b) {
		return nil
	}
	*g = advisoryGroup{}
	v := [6]any{&g.PID, &g.DB, &g.ClassID, &g.ObjSubID, &g.Shared, &g.ObjIDs}
	return json.Unmarshal(b, &v)
}

// idleAdvisory appends a group's locks to rows as lock rows, up to max
// rows in all; bad reports objids that are not numbers (left out).
func (a *answer) idleAdvisory(rows []lockRow, g *advisoryGroup, max int) (out []lockRow, bad int) {
	p := int(g.PID)
	mode := "ExclusiveLock"
	if g.Shared == 1 {
		mode = "ShareLock"
	}
	var db *string
	if name, ok := a.Databases[strconv.FormatInt(g.DB, 10)]; ok {
		db = &name
	}
	for f := range strings.FieldsSeq(g.ObjIDs) {
		if len(rows) >= max {
			break
		}
		objid, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			bad++
			continue
		}
		rows = append(rows, lockRow{Type: "advisory", DB: db, DBOid: &g.DB, ClassID: &g.ClassID, ObjID: &objid, ObjSubID: &g.ObjSubID, PID: &p, Mode: mode, Granted: true})
	}
	return rows, bad
}

type deadlocks struct {
	DB string `json:"db"`
	N  int64  `json:"n"`
}

// session is a row of pg_stat_activity. Columns that the role may not
// see (another role's session, without pg_read_all_stats) are null. The
// query sends it as an array of its fields, in order (UnmarshalJSON):
// the server builds an array for a thousand sessions in two thirds of
// the time it takes for objects, and it is a third shorter.
type session struct {
	PID        int        `json:"pid"`
	Leader     *int       `json:"leader"`
	DB         *string    `json:"db"`
	User       *string    `json:"user"`
	App        *string    `json:"app"`
	Addr       *string    `json:"addr"`
	Port       *int       `json:"port"`
	Start      *time.Time `json:"start"`
	Xact       *time.Time `json:"xact"`
	QueryStart *time.Time `json:"query_start"`
	Change     *time.Time `json:"change"`
	State      *string    `json:"state"`
	WaitType   *string    `json:"wait_type"`
	Wait       *string    `json:"wait"`
	Type       *string    `json:"type"`
	Query      *string    `json:"query"`
	Blockers   []int      `json:"blockers"`
}

func (s *session) UnmarshalJSON(b []byte) error {
	if s.decode(b) {
		return nil
	}
	*s = session{}
	v := [...]any{&s.PID, &s.Leader, &s.DB, &s.User, &s.App, &s.Addr, &s.Port, &s.Start, &s.Xact,
		&s.QueryStart, &s.Change, &s.State, &s.WaitType, &s.Wait, &s.Type, &s.Query, &s.Blockers}
	return json.Unmarshal(b, &v)
}

// lockRow is a row of pg_locks.
type lockRow struct {
	Type      string     `json:"type"`
	DB        *string    `json:"db"`
	DBOid     *int64     `json:"dboid"`
	Rel       *string    `json:"rel"`
	Page      *int64     `json:"page"`
	Tuple     *int64     `json:"tuple"`
	VXID      *string    `json:"vxid"`
	XID       *string    `json:"xid"`
	ClassID   *int64     `json:"classid"`
	ObjID     *int64     `json:"objid"`
	ObjSubID  *int64     `json:"objsubid"`
	VXact     *string    `json:"vxact"`
	PID       *int       `json:"pid"`
	Mode      string     `json:"mode"`
	Granted   bool       `json:"granted"`
	WaitStart *time.Time `json:"waitstart"`
}

func parseAnswer(b []byte) (*answer, error) {
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("pgsrc: the server's answer is not the lock graph asked for: %w", err)
	}
	return &a, nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func num(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// object names the locked object of r, as the report names locks: the
// database first for objects of one database. Two rows name the same
// object exactly when they have the same name.
func (r *lockRow) object() string {
	db := str(r.DB)
	if db == "" && r.DBOid != nil && *r.DBOid != 0 {
		db = "db" + strconv.FormatInt(*r.DBOid, 10)
	}
	in := func(s string) string {
		if db == "" {
			return s
		}
		return db + "/" + s
	}
	switch r.Type {
	case "advisory":
		// pg_advisory_lock(bigint) keeps the key's high half in classid and
		// its low half in objid, with objsubid 1; (int, int) keeps the two
		// keys, with objsubid 2.
		if num(r.ObjSubID) == 2 {
			return in(fmt.Sprintf("advisory(%d,%d)", int32(uint32(num(r.ClassID))), int32(uint32(num(r.ObjID)))))
		}
		key := int64(uint64(uint32(num(r.ClassID)))<<32 | uint64(uint32(num(r.ObjID))))
		return in(fmt.Sprintf("advisory(%d)", key))
	case "relation":
		return in("relation " + str(r.Rel))
	case "tuple":
		return in(fmt.Sprintf("row %s (%d,%d)", str(r.Rel), num(r.Page), num(r.Tuple)))
	case "page":
		return in(fmt.Sprintf("page %s %d", str(r.Rel), num(r.Page)))
	case "extend":
		return in("extend " + str(r.Rel))
	case "transactionid":
		return "transaction " + str(r.XID)
	case "virtualxid":
		return "virtual transaction " + str(r.VXID)
	case "object":
		return in(fmt.Sprintf("object %d/%d/%d", num(r.ClassID), num(r.ObjID), num(r.ObjSubID)))
	}
	// spectulative token, userlock, frozenid and kinds to come.
	var b strings.Builder
	b.WriteString(r.Type)
	for _, v := range []*int64{r.ClassID, r.ObjID, r.ObjSubID, r.Page, r.Tuple} {
		if v != nil {
			fmt.Fprintf(&b, " %d", *v)
		}
	}
	if r.Rel != nil {
		b.WriteString(" " + *r.Rel)
	}
	if r.XID != nil {
		b.WriteString(" xid " + *r.XID)
	}
	return in(b.String())
}

// Lock modes of tables (and of every other lock: advisory locks use
// ShareLock and ExclusiveLock), weakest first, and the modes each
// conflicts with (PostgreSQL's documentation, "Table-Level Lock Modes").
var modes = []string{"AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
	"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}

var conflictTable = map[string][]string{
	"AccessShareLock":          {"AccessExclusiveLock"},
	"RowShareLock":             {"ExclusiveLock", "AccessExclusiveLock"},
	"RowExclusiveLock":         {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ShareUpdateExclusiveLock": {"ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ShareLock":                {"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ShareRowExclusiveLock":    {"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ExclusiveLock":            {"RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"AccessExclusiveLock":      modes,
}

// conflicts reports whether a lock held in mode held blocks a request for
// mode want. A mode it does not know conflicts with every mode: the
// holder is then shown as a holder, never left out.
func conflicts(held, want string) bool {
	c, ok := conflictTable[want]
	if !ok {
		return true
	}
	if _, known := conflictTable[held]; !known {
		return true
	}
	for _, m := range c {
		if m == held {
			return true
		}
	}
	return false
}
