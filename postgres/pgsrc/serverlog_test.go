package pgsrc

import (
	"encoding/json"
	"strings"
	"testing"
)

// A deadlock as PostgreSQL 15 writes it in each format.
var (
	stderrLog = `2026-12-07 17:30:00.100 UTC [1233] LOG:  checkpoint starting: time
2026-12-07 17:30:00.123 UTC [1234] ERROR:  deadlock detected
2026-12-07 17:30:00.123 UTC [1234] DETAIL:  Process 1234 waits for ExclusiveLock on advisory lock [5,0,3002,1]; blocked by process 1235.
	Process 1235 waits for ExclusiveLock on advisory lock [5,0,3001,1]; blocked by process 1234.
	Process 1234: SELECT pg_advisory_xact_lock(3002)
	Process 1235: SELECT pg_advisory_xact_lock(3001)
2026-12-07 17:30:00.123 UTC [1234] HINT:  See server log for query details.
2026-12-07 17:30:00.123 UTC [1234] STATEMENT:  SELECT pg_advisory_xact_lock(3002)
2026-12-07 17:30:00.200 UTC [1235] LOG:  duration: 1.0 ms
`
	csvLog = `2026-12-07 17:30:00.123 UTC,"postgres","app",1234,"127.0.0.1:5000",6750a5a0.4d2,3,"SELECT",2026-12-07 17:29:59 UTC,3/7,742,ERROR,40P01,"deadlock detected","Process 1234 waits for ExclusiveLock on advisory lock [5,0,3002,1]; blocked by process 1235.
Process 1235 waits for ExclusiveLock on advisory lock [5,0,3001,1]; blocked by process 1234.
Process 1234: SELECT pg_advisory_xact_lock(3002)
Process 1235: SELECT pg_advisory_xact_lock(3001)","See server log for query details.",,,,"SELECT pg_advisory_xact_lock(3002)",,,"dl-a","client backend",,0
`
	jsonLog = `{"timestamp":"2026-12-07 17:30:00.123 UTC","user":"postgres","dbname":"app","pid":1234,"error_severity":"ERROR","state_code":"40P01","message":"deadlock detected","detail":"Process 1234 waits for ExclusiveLock on advisory lock [5,0,3002,1]; blocked by process 1235.\nProcess 1235 waits for ExclusiveLock on advisory lock [5,0,3001,1]; blocked by process 1234.\nProcess 1234: SELECT pg_advisory_xact_lock(3002)\nProcess 1235: SELECT pg_advisory_xact_lock(3001)","statement":"SELECT pg_advisory_xact_lock(3002)","application_name":"dl-a"}
`
)

// TestParseLog: each format gives the deadlock, the session cancelled and
// its statement; the note names both sessions and what each ran.
func TestParseLog(t *testing.T) {
	for _, tt := range []struct{ format, log string }{{formatStderr, stderrLog}, {formatCSV, csvLog}, {formatJSON, jsonLog}} {
		ds := ParseLog(tt.format, []byte(tt.log))
		if len(ds) != 1 {
			t.Fatalf("%s: %d deadlocks %+v; want 1", tt.format, len(ds), ds)
		}
		d := ds[0]
		if d.PID != 1234 || len(d.Waits) != 2 || len(d.Queries) != 2 || d.Statement != "SELECT pg_advisory_xact_lock(3002)" || d.At != "2026-12-07 17:30:00.123 UTC" {
			t.Errorf("%s: %+v", tt.format, d)
		}
		note := d.String()
		for _, want := range []string{"at 2026-12-07 17:30:00.123 UTC", "Process 1234 waits for ExclusiveLock on advisory lock [5,0,3002,1]; blocked by process 1235.",
			`It cancelled process 1234's statement "SELECT pg_advisory_xact_lock(3002)".`, `Process 1235 ran "SELECT pg_advisory_xact_lock(3001)".`} {
			if !strings.Contains(note, want) {
				t.Errorf("%s: note %q does not say %q", tt.format, note, want)
			}
		}
	}
	// Without %p in the prefix, the cancelled session is the one whose
	// query is the statement.
	noPID := strings.ReplaceAll(stderrLog, " [1234]", "")
	if ds := ParseLog(formatStderr, []byte(noPID)); len(ds) != 1 || ds[0].PID != 1234 {
		t.Errorf("a prefix without the pid: %+v; want pid 1234 found by its statement", ds)
	}
}

// The same deadlock with lc_messages 'de_DE.UTF-8': stderr with
// log_error_verbosity = verbose (the SQLSTATE after the severity), csvlog.
var (
	stderrLogDE = `2026-12-07 17:30:00.100 UTC [1233] LOG:  00000: Checkpoint beginnt: time
2026-12-07 17:30:00.123 UTC [1234] FEHLER:  40P01: Verklemmung (Deadlock) entdeckt
2026-12-07 17:30:00.123 UTC [1234] DETAIL:  Prozess 1234 wartet auf ExclusiveLock-Sperre auf Benutzersperre [5,0,3002,1]; blockiert von Prozess 1235.
	Prozess 1235 wartet auf ExclusiveLock-Sperre auf Benutzersperre [5,0,3001,1]; blockiert von Prozess 1234.
	Prozess 1234: SELECT pg_advisory_xact_lock(3002)
	Prozess 1235: SELECT pg_advisory_xact_lock(3001)
2026-12-07 17:30:00.123 UTC [1234] TIPP:  Einzelheiten zur Anfrage finden Sie im Serverlog.
2026-12-07 17:30:00.123 UTC [1234] ORT:  DeadLockReport, deadlock.c:1151
2026-12-07 17:30:00.123 UTC [1234] ANWEISUNG:  SELECT pg_advisory_xact_lock(3002)
2026-12-07 17:30:00.200 UTC [1235] LOG:  00000: Dauer: 1.0 ms
`
	csvLogDE = `2026-12-07 17:30:00.123 UTC,"postgres","app",1234,"127.0.0.1:5000",6750a5a0.4d2,3,"SELECT",2026-12-07 17:29:59 UTC,3/7,742,FEHLER,40P01,"Verklemmung (Deadlock) entdeckt","Prozess 1234 wartet auf ExclusiveLock-Sperre auf Benutzersperre [5,0,3002,1]; blockiert von Prozess 1235.
Prozess 1235 wartet auf ExclusiveLock-Sperre auf Benutzersperre [5,0,3001,1]; blockiert von Prozess 1234.
Prozess 1234: SELECT pg_advisory_xact_lock(3002)
Prozess 1235: SELECT pg_advisory_xact_lock(3001)","Einzelheiten zur Anfrage finden Sie im Serverlog.",,,,"SELECT pg_advisory_xact_lock(3002)",,,"dl-a","client backend",,0
`
)

// TestParseLogTranslated: a log in another language than English gives
// its deadlocks by their SQLSTATE, with the waits as the log writes them
// and the queries by process; a translated stderr log without the
// SQLSTATE gives none, and the note says why and what to set.
func TestParseLogTranslated(t *testing.T) {
	for _, tt := range []struct {
		format, log, statement string
	}{{formatStderr, stderrLogDE, "SELECT pg_advisory_xact_lock(3002)"}, {formatStderr, terseDE, "SELECT pg_advisory_xact_lock(3002)"},
		{formatCSV, csvLogDE, "SELECT pg_advisory_xact_lock(3002)"}, {formatStderr, verboseOther, ""}} {
		ds := ParseLog(tt.format, []byte(tt.log))
		if len(ds) != 1 {
			t.Fatalf("%s: %d deadlocks %+v; want 1", tt.format, len(ds), ds)
		}
		d := ds[0]
		if d.PID != 1234 || len(d.Waits) != 2 || len(d.Queries) != 2 || d.Statement != tt.statement || d.At != "2026-12-07 17:30:00.123 UTC" {
			t.Errorf("%s: %+v", tt.format, d)
		}
		note := d.String()
		for _, want := range []string{"1234 wartet auf ExclusiveLock-Sperre auf Benutzersperre [5,0,3002,1]; blockiert von ",
			"It cancelled process 1234's statement", `Process 1235 ran "SELECT pg_advisory_xact_lock(3001)".`} {
			if !strings.Contains(note, want) {
				t.Errorf("%s: note %q does not say %q", tt.format, note, want)
			}
		}
	}
	notes := logNotes("log/postgresql.log", formatStderr, []byte(terseOther), "nb_NO.UTF-8")
	if len(notes) != 1 || !strings.Contains(notes[0], `lc_messages "nb_NO.UTF-8"`) || !strings.Contains(notes[0], "log_error_verbosity = verbose") {
		t.Errorf("a stderr log in a language PostgreSQL does not ship, without SQLSTATEs: notes %q; want one saying its language and what to set", notes)
	}
	if notes := logNotes("log/postgresql.log", formatStderr, []byte(terseDE), "de_DE.UTF-8"); len(notes) != 2 {
		t.Errorf("a German stderr log: notes %q; want the deadlock", notes)
	}
}

var (
	terseDE = strings.ReplaceAll(strings.ReplaceAll(stderrLogDE, "40P01: ", ""), "00000: ", "")
	// A language PostgreSQL 15 ships no catalog for: read only by its
	// SQLSTATE.
	verboseOther = strings.NewReplacer("FEHLER:  40P01: Verklemmung (Deadlock) entdeckt", "FEIL:  40P01: vranglås oppdaget",
		"Prozess", "Prosess", "ANWEISUNG", "SETNING").Replace(stderrLogDE)
	terseOther = strings.ReplaceAll(verboseOther, "40P01: ", "")
)

func FuzzParseLog(f *testing.F) {
	for _, s := range []string{stderrLog, csvLog, jsonLog, stderrLogDE, csvLogDE, "x ERROR:  deadlock detected\n\tProcess 1: q\n", "\"40P01\"\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, format := range []string{formatStderr, formatCSV, formatJSON} {
			for _, d := range ParseLog(format, b) {
				if len(d.Waits) > 9 || len(d.Queries) > 8 {
					t.Fatalf("%s: %d waits, %d queries: unbounded", format, len(d.Waits), len(d.Queries))
				}
				_ = d.String()
			}
		}
	})
}

// FuzzAnswer: any document the server could send (or a hostile one) is
// decoded and turned into the model without a panic, and every lock of the
// model is a postgres lock with a name and a holder or a waiter.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		`{"now":"2026-12-07T15:09:25.215Z","self":1,"port":"5432","user":"u","stats":true,"deadlock_timeout":"1s",
		  "sessions":[[10,null,"app",null,"migrate","127.0.0.1",5000,null,"2026-12-07T15:09:12Z",null,"2026-12-07T15:09:12Z","idle in transaction"],
		              [11,null,"app",null,null,null,null,null,null,null,null,"active","Lock",null,null,null,[10]]],
		  "locks":[{"type":"advisory","db":"app","dboid":5,"classid":0,"objid":42,"objsubid":1,"pid":10,"mode":"ExclusiveLock","granted":true},
		           {"type":"advisory","db":"app","dboid":5,"classid":0,"objid":42,"objsubid":1,"pid":11,"mode":"ExclusiveLock","granted":false,"waitstart":"2026-12-07T15:09:13Z"},
		           {"type":"relation","db":"app","rel":"jobs","pid":11,"mode":"RowExclusiveLock","granted":true},
		           {"type":"transactionid","xid":"742","vxact":"-1/742","mode":"ExclusiveLock","granted":true}],
		  "advisory":[[10,5,0,1,0,"7 8 x 9"]],"databases":{"5":"app"},"deadlocks":[{"db":"app","n":2}]}`,
		`{"sessions":[[1,null,null,null,null,null,null,null,null,null,null,null,null,null,null,"<insufficient privilege>"]],"locks":[{"type":"tuple","pid":1,"mode":"Nonsense","granted":false}]}`,
		`{"locks":[{"type":"advisory","objsubid":2,"classid":-1,"objid":4294967295,"granted":false}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAnswer(b)
		if err != nil {
			return
		}
		snap, _ := (&Source{Server: "fuzz"}).convert(a)
		for _, l := range snap.Locks {
			if l.Kind != Kind || l.Name == "" || len(l.Holders)+len(l.Waiters) == 0 {
				t.Fatalf("lock %+v", l)
			}
		}
		if _, err := json.Marshal(snap); err != nil {
			t.Fatalf("the snapshot does not marshal: %v", err)
		}
	})
}
