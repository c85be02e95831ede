package pgsrc

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// oldSession and oldGroup decode as json.Unmarshal does field by field:
// what the fast paths must equal.
func oldSession(b []byte) (session, error) {
	var s session
	v := [...]any{&s.PID, &s.Leader, &s.DB, &s.User, &s.App, &s.Addr, &s.Port, &s.Start, &s.Xact,
		&s.QueryStart, &s.Change, &s.State, &s.WaitType, &s.Wait, &s.Type, &s.Query, &s.Blockers}
	err := json.Unmarshal(b, &v)
	return s, err
}

func oldGroup(b []byte) (advisoryGroup, error) {
	var g advisoryGroup
	v := [6]any{&g.PID, &g.DB, &g.ClassID, &g.ObjSubID, &g.Shared, &g.ObjIDs}
	err := json.Unmarshal(b, &v)
	return g, err
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// sameDecode fails t unless decoding b as a session and as an advisory
// group gives what json.Unmarshal gives, value and error.
func sameDecode(t *testing.T, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		return // the answer's decoder rejects it before any element is decoded
	}
	want, werr := oldSession(b)
	var got session
	gerr := json.Unmarshal(b, &got)
	if errText(gerr) != errText(werr) || (werr == nil && !reflect.DeepEqual(got, want)) {
		t.Fatalf("session of %q: %s, %v; json.Unmarshal: %s, %v", b, dump(got), gerr, dump(want), werr)
	}
	wantG, werr := oldGroup(b)
	var gotG advisoryGroup
	gerr = json.Unmarshal(b, &gotG)
	if errText(gerr) != errText(werr) || (werr == nil && gotG != wantG) {
		t.Fatalf("advisory group of %q: %+v, %v; json.Unmarshal: %+v, %v", b, gotG, gerr, wantG, werr)
	}
}

func dump(s session) string {
	b, _ := json.Marshal(s)
	return fmt.Sprintf("%d %s", s.PID, b)
}

var decodeSeeds = []string{
	`[42,7,"app","alice","migrate","10.0.0.5",5000,"2026-12-07T15:00:00Z","2026-12-07T15:01:00+02:00",
	  "2026-12-07T15:02:00.123456Z","2026-12-07T15:03:00Z","idle in transaction","Lock","advisory","client backend","SELECT 1",[3, 4]]`,
	`[43,null,null,null,null,null,null,null,null,null,null,null,null,null,null,"<insufficient privilege>",null]`,
	`[44,null,"a\"b","\u001b[31m","caf\u00e9","x\ny",-0,null,null,null,null,"idle",null,null,null,"é ☃ \ud83d\ude00",[]]`,
	`[45,null,null,null,null,null,1e3,null,null,null,null,null,null,null,null,null,null]`,
	`[46,null,null,null,null,null,null,"not a time",null,null,null,null,null,null,null,null,null]`,
	`[47,null,null,null,null,null,null,7,null,null,null,null,null,null,null,null,null]`,
	`[48,null,null,null,null,null,99999999999999999999,null,null,null,null,null,null,null,null,null,null]`,
	`[null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null]`,
	`[49,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,[1,"2"]]`,
	`[50,1,2]`, `[51,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,"extra"]`,
	`{"pid":1}`, `null`, `"x"`, `[]`, `[ ]`,
	`[10,5,0,1,0,"7 8 x 9"]`, `[10,5,0,1,0,7]`, `[10,5,-1,2,1,""]`, `[10,5,0,1,0,"7",8]`, `[10,5,null,1,0,"7"]`,
	`[10,5,0,1,0,"\u0037 8"]`, `[9223372036854775807,-9223372036854775808,0,0,0," "]`, `[9223372036854775808,0,0,0,0,""]`,
	"[10,5,0,1,0,\"\xff\"]",
	"[52,null,\"\xe2\x28\xa1\",null,null,null,null,null,null,null,null,null,null,null,null,null,null]",
}

// TestDecodeLikeJSON: the fast paths of session and advisory group
// decoding give json.Unmarshal's values and errors, hostile strings,
// escapes, bad numbers and bad times included.
func TestDecodeLikeJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		sameDecode(t, []byte(s))
	}
	// The common cases take the fast paths: else the comparison tests
	// json.Unmarshal against itself.
	for _, s := range decodeSeeds[:2] {
		if !(&session{}).decode([]byte(s)) {
			t.Errorf("session %s not decoded by the fast path", s)
		}
	}
	if !(&advisoryGroup{}).decode([]byte(`[10,5,0,1,0,"7 8 x 9"]`)) {
		t.Error("advisory group not decoded by the fast path")
	}
}

func FuzzSessionDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameDecode(t, b) })
}
