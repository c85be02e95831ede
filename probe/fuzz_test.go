package probe

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeRequest: any bytes give a request or an error, never a panic or
// a read beyond the limit; a request that decodes encodes back to itself.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		frame(`{"v":1,"op":"info"}`),
		frame(`{"v":1,"op":"goroutines","text":true}`),
		frame(`{"v":1,"op":"locks","extra":[1,{"a":null}]}`),
		"\x00\x00\x10\x01",
		"GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		q, err := decodeRequest(r)
		if read := len(b) - r.Len(); read > 4+maxRequest {
			t.Fatalf("read %d bytes; the limit is %d", read, 4+maxRequest)
		}
		if err != nil {
			return
		}
		j, err := json.Marshal(q)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRequest(bytes.NewReader([]byte(frame(string(j)))))
		if err != nil || again != q {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, q)
		}
	})
}

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
