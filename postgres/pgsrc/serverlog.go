package pgsrc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// MaxLogTail bounds how much of the end of a server log is read for the
// deadlocks PostgreSQL broke.
const MaxLogTail = 4 << 20

// maxLogDeadlocks bounds the deadlocks of the log that a report lists (the
// latest).
const maxLogDeadlocks = 5

// A Deadlock is one that PostgreSQL's deadlock detector broke, as its log
// tells it ("ERROR: deadlock detected", SQLSTATE 40P01).
type Deadlock struct {
	At  string // when, as the log says it ("2026-12-07 15:09:12.387 UTC"); "" if the log line has no time
	DB  string // the database, when the log says it
	PID int    // the session that detected it, and whose statement was cancelled; 0 if the log does not say
	// Waits are the detail's lines: "Process 123 waits for ExclusiveLock on
	// advisory lock [16384,0,2,1]; blocked by process 456."
	Waits []string
	// Queries are each process's query: "Process 123: SELECT ...".
	Queries []string
	// Statement is the statement cancelled.
	Statement string
}

// ServerLog reads the end of the server's log for the deadlocks
// PostgreSQL has broken itself, and returns the report's notes on them:
// the latest few, or why the log could not be read (what the role lacks,
// what the server does not write). path, when not "", is the log's path on
// this machine (the stderr log of a server without logging_collector, which
// no function names); else the log is found with pg_current_logfile() and
// read with pg_read_binary_file(), which the role may need to be granted.
// It is three statements beside the lock graph's, once per report.
func (s *Source) ServerLog(ctx context.Context, path string) []string {
	if path != "" {
		b, err := tailFile(path, MaxLogTail)
		if err != nil {
			return []string{fmt.Sprintf("PostgreSQL's log %s could not be read: %v", path, err)}
		}
		return logNotes(path, formatOf(path, b), b, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var doc []byte
	if err := s.q.QueryRow(ctx, logQuery, pgx.QueryExecModeSimpleProtocol).Scan(&doc); err != nil {
		return []string{"PostgreSQL's log could not be looked for: " + oneLine(err)}
	}
	var l logAnswer
	if err := json.Unmarshal(doc, &l); err != nil {
		return []string{"PostgreSQL's log could not be looked for: the server's answer is not the one asked for: " + oneLine(err)}
	}
	if missing := l.missing(); missing != "" {
		return []string{missing}
	}
	if err := s.q.QueryRow(ctx, filesQuery(l.Version), pgx.QueryExecModeSimpleProtocol).Scan(&l.Stderr, &l.CSV, &l.JSON); err != nil {
		return []string{"PostgreSQL's log could not be looked for: " + oneLine(err)}
	}
	var files []string
	for _, f := range []*string{l.JSON, l.CSV, l.Stderr} {
		if f != nil && *f != "" {
			files = append(files, *f)
		}
	}
	if len(files) == 0 {
		return []string{fmt.Sprintf("PostgreSQL's log was not read: the server writes it with logging_collector %s (log_destination %s), so pg_current_logfile() names no file; give its path to lockwatch-pg with --server-log PATH if it is readable on this machine (the deadlocks PostgreSQL broke are counted above; its log names them: \"deadlock detected\")",
			l.Collector, l.Destination)}
	}
	// The structured logs first: their fields need no guessing.
	file := files[0]
	var b []byte
	if err := s.q.QueryRow(ctx, `SELECT pg_catalog.pg_read_binary_file($1, greatest(s.size - $2, 0), $2, true) FROM pg_catalog.pg_stat_file($1, true) s`,
		file, int64(MaxLogTail)).Scan(&b); err != nil {
		return []string{fmt.Sprintf("PostgreSQL's log %s could not be read: %s", file, oneLine(err))}
	}
	if b == nil {
		return []string{fmt.Sprintf("PostgreSQL's log %s was rotated away while it was read; the next report reads the new one", file)}
	}
	if len(b) == MaxLogTail {
		b = dropPartialLine(b)
	}
	return logNotes(file, formatOf(file, b), b, l.Messages)
}

// logQuery asks what reading the log needs: whether the role may run the
// log functions (a function's privilege is checked when a statement
// starts, even in a branch not taken: they are called only by filesQuery).
const logQuery = `SELECT json_build_object(
  'user', current_user,
  'collector', current_setting('logging_collector'),
  'destination', current_setting('log_destination'),
  'version', current_setting('server_version_num')::int,
  'messages', current_setting('lc_messages'),
  'current', has_function_privilege('pg_catalog.pg_current_logfile(text)', 'EXECUTE'),
  'read', has_function_privilege('pg_catalog.pg_read_binary_file(text,bigint,bigint,boolean)', 'EXECUTE'),
  'stat', has_function_privilege('pg_catalog.pg_stat_file(text,boolean)', 'EXECUTE'))::text`

// filesQuery names the current log files; jsonlog is PostgreSQL 15's.
func filesQuery(version int) string {
	json := "NULL::text"
	if version >= 150000 {
		json = "pg_catalog.pg_current_logfile('jsonlog')"
	}
	return "SELECT pg_catalog.pg_current_logfile('stderr'), pg_catalog.pg_current_logfile('csvlog'), " + json
}

type logAnswer struct {
	User        string `json:"user"`
	Collector   string `json:"collector"`
	Destination string `json:"destination"`
	Version     int    `json:"version"`
	Messages    string `json:"messages"` // lc_messages: the language of the log's messages
	Current     bool   `json:"current"`
	Read        bool   `json:"read"`
	Stat        bool   `json:"stat"`
	// The current log files, by format (filesQuery).
	Stderr, CSV, JSON *string
}

// missing says which functions the role may not run, and how to grant
// them; "" when it may run them all.
func (l *logAnswer) missing() string {
	var fns []string
	if !l.Current {
		fns = append(fns, "pg_catalog.pg_current_logfile(text)")
	}
	if !l.Stat {
		fns = append(fns, "pg_catalog.pg_stat_file(text,boolean)")
	}
	if !l.Read {
		fns = append(fns, "pg_catalog.pg_read_binary_file(text,bigint,bigint,boolean)")
	}
	if len(fns) == 0 {
		return ""
	}
	role := pgx.Identifier{l.User}.Sanitize()
	grants := make([]string, len(fns))
	for i, f := range fns {
		grants[i] = "GRANT EXECUTE ON FUNCTION " + f + " TO " + role
	}
	return fmt.Sprintf("PostgreSQL's log was not read: role %q may not execute %s (superusers may; pg_read_binary_file reads any file the server can, so grant it with care): %s; or give the log's path to lockwatch-pg with --server-log PATH if it is readable on this machine",
		l.User, strings.Join(fns, ", "), strings.Join(grants, "; "))
}

// The formats of a server log (log_destination).
const (
	formatStderr = "stderr"
	formatCSV    = "csvlog"
	formatJSON   = "jsonlog"
)

// formatOf tells a log's format by its name (PostgreSQL names its csvlog
// and jsonlog files .csv and .json), else by its first full line.
func formatOf(path string, b []byte) string {
	switch {
	case strings.HasSuffix(path, ".json"):
		return formatJSON
	case strings.HasSuffix(path, ".csv"):
		return formatCSV
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		return formatJSON
	}
	return formatStderr
}

// logNotes are the report's notes on the deadlocks of a log. messages is
// the server's lc_messages ("" if not known): the language its log is
// written in.
func logNotes(path, format string, b []byte, messages string) []string {
	ds := ParseLog(format, b)
	if len(ds) == 0 {
		what := fmt.Sprintf("PostgreSQL's log (%s, the last %s of the current file; files rotated away before it are not read) shows no deadlock it broke", path, size(len(b)))
		switch {
		case format != formatStderr:
			return []string{what + " (SQLSTATE 40P01, in any language)"}
		case !english(messages):
			return []string{fmt.Sprintf("%s, as far as lockwatch can tell: the server writes its messages in lc_messages %q, and a deadlock in a stderr log in another language than English is found only by its SQLSTATE 40P01, which the log shows with log_error_verbosity = verbose; set that, or log_destination csvlog or jsonlog, or lc_messages = 'C', for lockwatch to read them", what, messages)}
		}
		return []string{what + " (\"ERROR:  deadlock detected\", or SQLSTATE 40P01 with log_error_verbosity = verbose: a stderr log in another language than English is read only by its SQLSTATE)"}
	}
	n := len(ds)
	if len(ds) > maxLogDeadlocks {
		ds = ds[len(ds)-maxLogDeadlocks:]
	}
	out := []string{fmt.Sprintf("PostgreSQL's log (%s, the last %s of the current file; files rotated away before it are not read) shows %d deadlocks it broke itself, each by cancelling the statement of one of the sessions; the latest %d follow (their waits quoted as the log writes them)", path, size(len(b)), n, len(ds))}
	for i := len(ds) - 1; i >= 0; i-- {
		out = append(out, ds[i].String())
	}
	return out
}

// english reports whether lc_messages is English (or not known): C,
// POSIX, en_*; a server built without NLS writes English whatever it says.
func english(messages string) bool {
	m := strings.ToLower(messages)
	return m == "" || m == "c" || m == "posix" || strings.HasPrefix(m, "c.") || strings.HasPrefix(m, "en")
}

// String is the deadlock as a note: when, where, who waited for whom, and
// which statement PostgreSQL cancelled.
func (d Deadlock) String() string {
	var b strings.Builder
	b.WriteString("deadlock broken by PostgreSQL")
	if d.At != "" {
		b.WriteString(" at " + d.At)
	}
	if d.DB != "" {
		fmt.Fprintf(&b, " in database %q", d.DB)
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(d.Waits, " "))
	if d.PID != 0 {
		fmt.Fprintf(&b, " It cancelled process %d's statement", d.PID)
	} else {
		b.WriteString(" It cancelled the statement")
	}
	if d.Statement != "" {
		fmt.Fprintf(&b, " %q", clipText(d.Statement))
	}
	b.WriteString(".")
	for _, q := range d.Queries {
		if pid, query, ok := strings.Cut(q, ": "); ok && (d.PID == 0 || pid != "Process "+strconv.Itoa(d.PID)) {
			fmt.Fprintf(&b, " %s ran %q.", pid, clipText(query))
		}
	}
	return b.String()
}

// ParseLog reads the deadlocks of a server log in format (stderr, csvlog
// or jsonlog), oldest first. It reads only b, in bounded memory; what it
// cannot read is skipped.
func ParseLog(format string, b []byte) []Deadlock {
	switch format {
	case formatJSON:
		return parseJSONLog(b)
	case formatCSV:
		return parseCSVLog(b)
	}
	return parseStderrLog(b)
}

// parseJSONLog reads jsonlog: one object a line.
func parseJSONLog(b []byte) []Deadlock {
	var out []Deadlock
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"40P01"`)) {
			continue
		}
		var e struct {
			Timestamp string `json:"timestamp"`
			DB        string `json:"dbname"`
			PID       int    `json:"pid"`
			State     string `json:"state_code"`
			Detail    string `json:"detail"`
			Statement string `json:"statement"`
		}
		if json.Unmarshal(line, &e) != nil || e.State != "40P01" {
			continue
		}
		out = append(out, fromDetail(Deadlock{At: e.Timestamp, DB: e.DB, PID: e.PID, Statement: e.Statement}, e.Detail))
	}
	return out
}

// The columns of csvlog that a deadlock needs (PostgreSQL 13 and later
// write at least 23).
const (
	csvTime      = 0
	csvDB        = 2
	csvPID       = 3
	csvState     = 12
	csvDetail    = 14
	csvStatement = 19
	csvColumns   = 23
)

// parseCSVLog reads csvlog: records of which a field may span lines.
func parseCSVLog(b []byte) []Deadlock {
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	r.ReuseRecord = true
	var out []Deadlock
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return out
		}
		var pe *csv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return out
		}
		if err != nil || len(rec) < csvColumns || rec[csvState] != "40P01" {
			continue
		}
		pid, _ := strconv.Atoi(rec[csvPID])
		out = append(out, fromDetail(Deadlock{At: rec[csvTime], DB: rec[csvDB], PID: pid, Statement: rec[csvStatement]}, rec[csvDetail]))
	}
}

// logWords are how a server log in one language (lc_messages) writes a
// deadlock in the stderr format: the error line's severity and message,
// and the names of the fields that follow it.
type logWords struct {
	severity, message string
	detail, statement string // with their colon: "DETAIL:  "
}

// deadlockWords are the words of the languages whose message catalogs
// PostgreSQL 15 ships (English first), by message; a log in another
// language (or another version's wording) is read by its SQLSTATE, when
// log_error_verbosity = verbose writes it.
var deadlockWords = func() map[string]logWords {
	m := map[string]logWords{}
	for _, w := range []logWords{
		{"ERROR", "deadlock detected", "DETAIL:  ", "STATEMENT:  "},
		{"FEHLER", "Verklemmung (Deadlock) entdeckt", "DETAIL:  ", "ANWEISUNG:  "},    // de
		{"ERROR", "se ha detectado un deadlock", "DETALLE:  ", "SENTENCIA:  "},        // es
		{"ERREUR", "interblocage (deadlock) détecté", "DÉTAIL:  ", "INSTRUCTION :  "}, // fr
		{"ERRORE", "rilevato deadlock", "DETTAGLI:  ", "ISTRUZIONE:  "},               // it
		{"ERROR", "デッドロックを検出しました", "詳細:  ", "文:  "},                                   // ja
		{"შეცდომა", "ნაპოვნია ურთიერთბლოკირება", "დეტალები:  ", "ოპერატორი:  "},       // ka
		{"오류", "deadlock 발생했음", "상세정보:  ", "명령 구문:  "},                                // ko
		{"ОШИБКА", "обнаружена взаимоблокировка", "ПОДРОБНОСТИ:  ", "ОПЕРАТОР:  "},    // ru
		{"FEL", "deadlock upptäckt", "DETALJ:  ", "SATS:  "},                          // sv
		{"ПОМИЛКА", "виявлено взаємне блокування", "ВІДОМОСТІ:  ", "ІНСТРУКЦІЯ:  "},   // uk
		{"错误", "检测到死锁", "详细信息:  ", "语句:  "},                                           // zh_CN
	} {
		m[w.message] = w
	}
	return m
}()

// deadlockStart reads a stderr log line as the start of a deadlock's
// entry: "PREFIX SEVERITY:  [40P01: ]MESSAGE". words is the entry's
// language, or nil for one known only by its SQLSTATE.
func deadlockStart(line string) (prefix string, words *logWords, ok bool) {
	i := strings.Index(line, ":  ")
	if i < 0 {
		return "", nil, false
	}
	sev := strings.LastIndexByte(line[:i], ' ') + 1
	msg, state := strings.CutPrefix(line[i+3:], "40P01: ")
	if w, known := deadlockWords[msg]; known && w.severity == line[sev:i] {
		return line[:sev], &w, true
	}
	return line[:sev], nil, state
}

// parseStderrLog reads the stderr format, whose lines start with
// log_line_prefix (anything): "PREFIX ERROR:  deadlock detected", then
// "PREFIX DETAIL:  Process ...", its lines continued by a tab, and
// "PREFIX STATEMENT:  ...". With log_error_verbosity verbose the message
// carries its SQLSTATE: "ERROR:  40P01: deadlock detected". In another
// language (lc_messages) the words are translated: those PostgreSQL ships
// are known (deadlockWords); any other is read by its SQLSTATE, its first
// field taken for the detail and its statement not told apart.
func parseStderrLog(b []byte) []Deadlock {
	var out []Deadlock
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var cur *Deadlock
	var prefix, field string // the deadlock's line prefix, and the field being continued
	var words *logWords      // the entry's language; nil: known by its SQLSTATE only
	fields := 0              // fields of the entry read
	var detail strings.Builder
	flush := func() {
		if cur != nil {
			out = append(out, fromDetail(*cur, detail.String()))
		}
		cur, field = nil, ""
		detail.Reset()
	}
	for sc.Scan() {
		line := sc.Text()
		if p, w, ok := deadlockStart(line); ok {
			flush()
			prefix, words, fields = p, w, 0
			cur = &Deadlock{At: timeOf(prefix), PID: prefixPID(prefix)}
			continue
		}
		if cur == nil {
			continue
		}
		rest, ok := strings.CutPrefix(line, prefix)
		switch {
		case strings.HasPrefix(line, "\t"):
			if field == "DETAIL" {
				detail.WriteString("\n" + line[1:])
			} else if field == "STATEMENT" {
				cur.Statement += "\n" + line[1:]
			}
		case ok && words != nil && strings.HasPrefix(rest, words.detail):
			field = "DETAIL"
			detail.WriteString(rest[len(words.detail):])
		case ok && words != nil && strings.HasPrefix(rest, words.statement):
			field = "STATEMENT"
			cur.Statement = rest[len(words.statement):]
		case ok && words == nil && fields == 0 && strings.Contains(rest, ":  "):
			// A deadlock always has a detail, and it comes first.
			field = "DETAIL"
			_, text, _ := strings.Cut(rest, ":  ")
			detail.WriteString(text)
			fields++
		case ok:
			field = "" // HINT, CONTEXT, LOCATION: the same entry, not needed
			fields++
		default:
			flush() // another process's line: the entry is over
		}
	}
	flush()
	return out
}

// fromDetail fills a deadlock's waits and queries from its DETAIL:
// "Process N waits for ...; blocked by process M." lines, then "Process N:
// QUERY" lines (the server log's detail has them; the client's has not).
// In another language the words differ ("Prozess N wartet auf ...",
// "Prozess N: QUERY"): a query's line is words, its process number and a
// colon; the lines before the first query are the waits, kept as written;
// a line after a query that is not one continues it.
func fromDetail(d Deadlock, detail string) Deadlock {
	for _, l := range strings.Split(detail, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if pid, query, ok := queryLine(l); ok {
			d.Queries = append(d.Queries, "Process "+pid+": "+query)
			continue
		}
		if n := len(d.Queries); n > 0 {
			d.Queries[n-1] += " " + l // a query of several lines
			continue
		}
		d.Waits = append(d.Waits, l)
	}
	if len(d.Waits) > 8 {
		d.Waits = append(d.Waits[:8], fmt.Sprintf("(and %d more waits)", len(d.Waits)-8))
	}
	if len(d.Queries) > 8 {
		d.Queries = d.Queries[:8]
	}
	if d.PID == 0 && d.Statement != "" {
		// The cancelled session is the one whose query is the statement.
		var who []string
		for _, q := range d.Queries {
			if p, text, ok := strings.Cut(q, ": "); ok && text == strings.TrimSpace(d.Statement) {
				who = append(who, p)
			}
		}
		if len(who) == 1 {
			d.PID, _ = strconv.Atoi(strings.TrimPrefix(who[0], "Process "))
		}
	}
	return d
}

// queryLine reads a detail's "Process N: QUERY" line, in any language:
// at most three words of letters, a number, a colon (after a space in
// French).
func queryLine(l string) (pid, query string, ok bool) {
	i := strings.IndexAny(l, "0123456789")
	if i <= 0 || i > 64 {
		return "", "", false
	}
	words := strings.Fields(l[:i])
	if len(words) == 0 || len(words) > 3 {
		return "", "", false
	}
	for _, w := range words {
		for _, r := range w {
			if !unicode.IsLetter(r) {
				return "", "", false
			}
		}
	}
	rest := l[i:]
	n := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
	after, colon := strings.CutPrefix(strings.TrimPrefix(rest[n:], " "), ":")
	if !colon {
		return "", "", false
	}
	return rest[:n], strings.TrimSpace(after), true
}

// timeOf finds a time in a log line's prefix: "2026-12-07 15:09:12.387
// UTC [123] " gives "2026-12-07 15:09:12.387 UTC".
func timeOf(prefix string) string {
	f := strings.Fields(prefix)
	for i, w := range f {
		if len(w) == 10 && w[4] == '-' && w[7] == '-' && i+1 < len(f) && strings.Count(f[i+1], ":") == 2 {
			at := w + " " + f[i+1]
			if i+2 < len(f) && isZone(f[i+2]) {
				at += " " + f[i+2]
			}
			return at
		}
	}
	return ""
}

func isZone(s string) bool {
	if len(s) == 0 || len(s) > 6 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c == '+' || c == '-' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// prefixPID finds "[123]" (log_line_prefix's %p, as the default prefix has
// it) in a log line's prefix; 0 if none.
func prefixPID(prefix string) int {
	for rest := prefix; ; {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			return 0
		}
		rest = rest[i+1:]
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			return 0
		}
		if n, err := strconv.Atoi(rest[:j]); err == nil && n > 0 {
			return n
		}
	}
}

// tailFile reads the last limit bytes of a file, from a full line on.
func tailFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	off := max(st.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, limit))
	if err != nil {
		return nil, err
	}
	if off > 0 {
		b = dropPartialLine(b)
	}
	return b, nil
}

// dropPartialLine drops what precedes the first full line of a log's tail.
func dropPartialLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return nil
}

func size(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+1023)/1024)
}

// clipText is a query for a note: on one line, at most 200 characters.
func clipText(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		return string(r[:200]) + "..."
	}
	return s
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
