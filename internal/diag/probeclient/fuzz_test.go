package probeclient

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeAnswer: any answer a probe sends is refused by the bound on
// what it would build, or decoded, or an error; never a panic. Seeds: real
// answers, and the amplifying one (empty objects).
func FuzzDecodeAnswer(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"ok":true,"info":{"pid":1,"args":["a","b"]}}`,
		`{"v":1,"ok":true,"mutexes":{"pid":1,"mutexes":[{},{},{"waiters":[{"stack":[{"func":"f"}]}]}]}}`,
		`{"v":1,"ok":true,"dump":{"format":"proto","size":12}}`,
		`{"v":1,"ok":false,"error":"\u001b]0;x\u0007"}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`,
		`"\\\"{,{,{"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkAnswerSize("fuzz", b) != nil {
			return
		}
		var ans answer
		_ = json.Unmarshal(b, &ans)
	})
}
