package reportcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/report"
)

// hostile are strings encoding/json escapes, each its own way.
var hostile = []string{"", "plain", `q"uote`, `back\slash`, "<a&b>", "tab\tnl\n", "\x1b[31m", "\x7f", "\x00",
	"caf\u00e9", "\u2028\u2029", "\u202e", "bad\xffutf8", "\xc3", "日本"}

// lockRows are rows with every field of LockRow and Party set and left out.
func lockRows(n int) []report.LockRow {
	rows := make([]report.LockRow, 0, n)
	since := time.Date(2026, 12, 7, 15, 9, 10, 628123456, time.UTC)
	for i := range n {
		s := hostile[i%len(hostile)]
		p := report.Party{PID: 1000 + i, Start: uint64(i) * 977, Goroutine: int64(i%3) - 1, Alive: i%2 == 0, State: "alive",
			For: report.Duration(time.Duration(i) * 1234567)}
		if i%4 == 1 {
			p.Host, p.Death, p.Read, p.Inferred, p.Role = s, "gone", true, "inferred: "+s, s
		}
		if i%3 == 0 {
			p.Since = since.Add(time.Duration(i) * time.Millisecond)
		}
		if i%5 == 2 {
			p.Since = since.In(time.FixedZone("x", 3600))
			p.Where = &report.FrameJSON{Func: "main." + s}
			if i%2 == 0 {
				p.Where.File, p.Where.Line = "/src/"+s+".go", i
			}
		}
		row := report.LockRow{Name: fmt.Sprintf("/tmp/%s[%d-%d]", s, i, i), State: "held", Waiting: i % 4}
		switch i % 6 {
		case 0:
			row.Holder = &p
		case 1:
			row.Holders = []report.Party{p, p}
		case 2:
			row.Holders = []report.Party{}
		case 3:
			row.Facts = []report.Fact{}
		}
		if i%2 == 1 {
			row.Kind = "posix"
			row.Facts = []report.Fact{{Name: "type", Value: "POSIX WRITE " + s}, {Name: "word", Value: s, Raw: i%4 == 1}}
		}
		rows = append(rows, row)
	}
	return rows
}

// marshalReport prints what json.Marshal prints, for reports with no
// locks, nil and empty, and with every kind of row, whatever the rest of
// the report holds (a lock's name in a finding, a note that looks like the
// locks member).
func TestMarshalReportIsJSONMarshal(t *testing.T) {
	taken := time.Date(2026, 12, 7, 15, 9, 10, 0, time.UTC)
	base := report.Report{Schema: report.Schema, Run: `file locks "locks":null`, Taken: taken,
		Findings: []report.Finding{{Kind: report.Cycle, Lock: `"locks":null`, Summary: `{"locks":null}`, Next: "x"}},
		Notes:    []string{`,"locks":null,`}, Unlisted: map[string]int{"locks": 2}}
	for _, locks := range [][]report.LockRow{nil, {}, lockRows(1), lockRows(300)} {
		r := base
		r.Locks = locks
		compact, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		var indented bytes.Buffer
		if err := json.Indent(&indented, compact, "", "  "); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			indent string
			want   []byte
		}{{"", compact}, {"  ", indented.Bytes()}, {"\t", nil}} {
			if c.want == nil {
				var b bytes.Buffer
				json.Indent(&b, compact, "", c.indent)
				c.want = b.Bytes()
			}
			got, err := marshalReport(&r, c.indent)
			if err != nil {
				t.Fatalf("%d locks: %v", len(locks), err)
			}
			if !bytes.Equal(got, c.want) {
				i := 0
				for i < len(got) && i < len(c.want) && got[i] == c.want[i] {
					i++
				}
				t.Errorf("%d locks, indent %q: differs from encoding/json at byte %d:\n got %.200q\nwant %.200q", len(locks), c.indent, i, got[i:], c.want[i:])
			}
		}
	}
	// Print's JSON is json.MarshalIndent's and a newline, compact
	// json.Marshal's.
	r := base
	r.Locks = lockRows(100)
	for _, compact := range []bool{false, true} {
		var got bytes.Buffer
		if err := Print(&got, &r, JSON, compact); err != nil {
			t.Fatal(err)
		}
		want, _ := json.MarshalIndent(&r, "", "  ")
		if compact {
			want, _ = json.Marshal(&r)
		}
		if !bytes.Equal(got.Bytes(), append(want, '\n')) {
			t.Errorf("Print(JSON, compact %v) is not encoding/json's", compact)
		}
	}
	r.Locks = lockRows(2)
	r.Locks[1].Holders[0].Since = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := marshalReport(&r, "  "); err == nil {
		t.Errorf("a time json.Marshal refuses: no error")
	}
}

// The lock encoder writes LockRow, Party, Fact and FrameJSON field by
// field: a field added to one of them, or a changed tag, must be added to
// it too.
func TestLockEncoderFields(t *testing.T) {
	want := map[reflect.Type]string{
		reflect.TypeFor[report.LockRow](): "Name name|Kind kind,omitempty|State state|Holder holder,omitempty|Holders holders,omitempty|Waiting waiting|Facts facts,omitempty",
		reflect.TypeFor[report.Party](): "Host host,omitempty|PID pid|Start start|Goroutine goroutine|Alive alive|State state|Death death,omitempty|Read read,omitempty|" +
			"Inferred inferred,omitempty|Role role,omitempty|Since since,omitzero|For for_ms|Where where,omitempty",
		reflect.TypeFor[report.Fact]():      "Name name|Value value|Raw raw,omitempty",
		reflect.TypeFor[report.FrameJSON](): "Func func|File file,omitempty|Line line,omitempty",
	}
	for typ, w := range want {
		var fs []string
		for i := range typ.NumField() {
			if f := typ.Field(i); f.IsExported() {
				fs = append(fs, f.Name+" "+f.Tag.Get("json"))
			}
		}
		if got := strings.Join(fs, "|"); got != w {
			t.Errorf("%v's fields are\n%s\nnot what appendLocks writes:\n%s\n(update reportcmd/jsonlocks.go)", typ, got, w)
		}
	}
}

// BenchmarkPrintJSON prints a report of 10,000 POSIX locks, as attach of
// their holder does.
func BenchmarkPrintJSON(b *testing.B) {
	since := time.Date(2026, 12, 7, 15, 9, 10, 628123456, time.UTC)
	rows := make([]report.LockRow, 10000)
	for i := range rows {
		rows[i] = report.LockRow{Name: fmt.Sprintf("/tmp/bench/records[%d-%d]", i, i), Kind: "posix", State: "held",
			Holder: &report.Party{PID: 4242, Start: 123456, Goroutine: -1, Alive: true, State: "alive", Since: since, For: 1234},
			Facts:  []report.Fact{{Name: "type", Value: "POSIX WRITE"}, {Name: "inode", Value: "fe:00:9987073"}}}
	}
	r := &report.Report{Schema: report.Schema, Run: "file locks", Locks: rows}
	w := NewWriter(discard{})
	for b.Loop() {
		if err := Print(w, r, JSON, false); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
