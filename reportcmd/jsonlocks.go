package reportcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/lockwatch/lockwatch/report"
)

// marshalReport returns json.Marshal(r) with indent "" (and, when
// indent is not "", indented as json.Indent(dst, src, "", indent) would),
// byte for byte, with the locks table, which has a row per lock (10,000 of
// them for a holder of 10,000 file locks), written by jsonOut instead of
// encoding/json's reflection and the indentation's pass over its bytes:
// the rest of the report by encoding/json, the locks put in where it
// printed none.
func marshalReport(r *report.Report, indent string) ([]byte, error) {
	cp := *r
	cp.Locks = nil
	rest, err := json.Marshal(&cp)
	if err != nil {
		return nil, err
	}
	at := topLevelValue(rest, "locks")
	if at < 0 || !bytes.HasPrefix(rest[at:], []byte("null")) {
		return nil, fmt.Errorf("report JSON: no locks member in %.40q", rest)
	}
	e := &jsonOut{indent: indent, pad: []byte{'\n'}}
	b := make([]byte, 0, 2*len(rest)+len(r.Locks)*600)
	if indent == "" {
		b = append(b, rest[:at]...)
	} else {
		b = indentJSON(b, rest[:at], indent, 0)
	}
	if b, err = e.locks(b, r.Locks, 1); err != nil {
		return nil, err
	}
	if indent == "" {
		return append(b, rest[at+len("null"):]...), nil
	}
	return indentJSON(b, rest[at+len("null"):], indent, 1), nil
}

// topLevelValue returns where the value of the member named key of the
// object b (compact JSON) begins, or -1.
func topLevelValue(b []byte, key string) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(b) {
				return -1
			}
			if depth == 1 && j+1 < len(b) && b[j+1] == ':' && string(b[i+1:j]) == key {
				return j + 2
			}
			i = j
		}
	}
	return -1
}

// jsonOut writes the locks table as encoding/json prints a
// []report.LockRow, compact or indented as json.Indent indents it. The
// fields and their options are LockRow's, Party's, Fact's and FrameJSON's
// (TestLockEncoderFields fails when one of them changes). Its methods
// append to a slice they are given and return it (a local slice: no write
// barrier per append while the collector runs).
type jsonOut struct {
	indent string // "": compact
	pad    []byte // a newline and the indentation of the deepest level so far
}

// line starts a line at depth (nothing when compact).
func (e *jsonOut) line(b []byte, depth int) []byte {
	if e.indent == "" {
		return b
	}
	for len(e.pad) < 1+depth*len(e.indent) {
		e.pad = append(e.pad, e.indent...)
	}
	return append(b, e.pad[:1+depth*len(e.indent)]...)
}

// key writes a member's name (a plain one: no escaping) at depth, after a
// comma unless it is the object's first.
func (e *jsonOut) key(b []byte, name string, depth int, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = e.line(b, depth)
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	if e.indent != "" {
		b = append(b, ' ')
	}
	return b
}

// end closes an object or array whose members are at depth.
func (e *jsonOut) end(b []byte, c byte, depth int) []byte {
	return append(e.line(b, depth-1), c)
}

// locks writes rows, an array at depth (its rows one deeper).
func (e *jsonOut) locks(b []byte, rows []report.LockRow, depth int) ([]byte, error) {
	switch {
	case rows == nil:
		return append(b, "null"...), nil
	case len(rows) == 0:
		return append(b, "[]"...), nil
	}
	b = append(b, '[')
	d := depth + 1
	var err error
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.line(b, d)
		l := &rows[i]
		b = append(b, '{')
		b = appendString(e.key(b, "name", d+1, true), l.Name)
		if l.Kind != "" {
			b = appendString(e.key(b, "kind", d+1, false), l.Kind)
		}
		b = appendString(e.key(b, "state", d+1, false), l.State)
		if l.Holder != nil {
			if b, err = e.party(e.key(b, "holder", d+1, false), l.Holder, d+1); err != nil {
				return nil, err
			}
		}
		if len(l.Holders) > 0 {
			b = append(e.key(b, "holders", d+1, false), '[')
			for j := range l.Holders {
				if j > 0 {
					b = append(b, ',')
				}
				if b, err = e.party(e.line(b, d+2), &l.Holders[j], d+2); err != nil {
					return nil, err
				}
			}
			b = e.end(b, ']', d+2)
		}
		b = strconv.AppendInt(e.key(b, "waiting", d+1, false), int64(l.Waiting), 10)
		if len(l.Facts) > 0 {
			b = append(e.key(b, "facts", d+1, false), '[')
			for j, f := range l.Facts {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(e.line(b, d+2), '{')
				b = appendString(e.key(b, "name", d+3, true), f.Name)
				b = appendString(e.key(b, "value", d+3, false), f.Value)
				if f.Raw {
					b = append(e.key(b, "raw", d+3, false), "true"...)
				}
				b = e.end(b, '}', d+3)
			}
			b = e.end(b, ']', d+2)
		}
		b = e.end(b, '}', d+1)
	}
	return e.end(b, ']', d), nil
}

// party writes p, an object at depth (its members one deeper).
func (e *jsonOut) party(b []byte, p *report.Party, depth int) ([]byte, error) {
	d := depth + 1
	b = append(b, '{')
	first := true
	if p.Host != "" {
		b = appendString(e.key(b, "host", d, true), p.Host)
		first = false
	}
	b = strconv.AppendInt(e.key(b, "pid", d, first), int64(p.PID), 10)
	b = strconv.AppendUint(e.key(b, "start", d, false), p.Start, 10)
	b = strconv.AppendInt(e.key(b, "goroutine", d, false), p.Goroutine, 10)
	b = strconv.AppendBool(e.key(b, "alive", d, false), p.Alive)
	b = appendString(e.key(b, "state", d, false), p.State)
	if p.Death != "" {
		b = appendString(e.key(b, "death", d, false), p.Death)
	}
	if p.Read {
		b = append(e.key(b, "read", d, false), "true"...)
	}
	if p.Inferred != "" {
		b = appendString(e.key(b, "inferred", d, false), p.Inferred)
	}
	if p.Role != "" {
		b = appendString(e.key(b, "role", d, false), p.Role)
	}
	if !p.Since.IsZero() {
		b = append(e.key(b, "since", d, false), '"') // time.Time's MarshalJSON: its AppendText quoted
		var err error
		if b, err = p.Since.AppendText(b); err != nil {
			return nil, fmt.Errorf("json: error calling MarshalJSON for type time.Time: %w", err)
		}
		b = append(b, '"')
	}
	b = strconv.AppendInt(e.key(b, "for_ms", d, false), time.Duration(p.For).Milliseconds(), 10) // Duration's MarshalJSON
	if p.Where != nil {
		b = append(e.key(b, "where", d, false), '{')
		b = appendString(e.key(b, "func", d+1, true), p.Where.Func)
		if p.Where.File != "" {
			b = appendString(e.key(b, "file", d+1, false), p.Where.File)
		}
		if p.Where.Line != 0 {
			b = strconv.AppendInt(e.key(b, "line", d+1, false), int64(p.Where.Line), 10)
		}
		b = e.end(b, '}', d+1)
	}
	return e.end(b, '}', d), nil
}

// appendString appends s quoted as encoding/json quotes a string: as it
// is when it is printable ASCII without a quote, backslash or the HTML
// characters json escapes (<, >, &); else as json.Marshal prints it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
