package reportcmd

import (
	"bytes"
	"encoding/json"
	"testing"
)

// indentJSON must print what json.Indent prints, byte for byte: strings
// holding the punctuation it indents on, escapes (an escaped quote or
// backslash before a closing quote), empty and nested containers.
var indentCases = []string{
	`{}`, `[]`, `null`, `"x"`, `12`, `{"a":[]}`, `{"a":{}}`, `[[],{},[[]]]`,
	`{"a":1,"b":[1,2,{"c":"d"}],"e":{"f":null,"g":true}}`,
	`{"s":"a,b:{c}[d]","t":"q\"uote","u":"back\\","v":"\\\"","w":"\u003c\u0026\u003e"}`,
	`[{"k":[{"l":[]}]},"]","[",",",":"]`,
}

func TestIndentJSONIsJSONIndent(t *testing.T) {
	for _, c := range indentCases {
		checkIndent(t, []byte(c))
	}
}

func FuzzIndentJSON(f *testing.F) {
	for _, c := range indentCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		m, err := json.Marshal(v)
		if err != nil {
			return
		}
		checkIndent(t, m)
	})
}

func checkIndent(t *testing.T, src []byte) {
	t.Helper()
	src = append(src, '\n') // as json.Encoder.Encode ends a value
	var want bytes.Buffer
	if err := json.Indent(&want, src, "", "  "); err != nil {
		t.Fatalf("json.Indent(%q): %v", src, err)
	}
	if got := indentJSON(nil, src, "  ", 0); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("indentJSON(%q) =\n%s\nwant\n%s", src, got, want.Bytes())
	}
}
