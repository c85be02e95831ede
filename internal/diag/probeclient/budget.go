package probeclient

import (
	"fmt"

	"github.com/lockwatch/lockwatch/internal/diag/jsonbudget"
)

// maxAnswerValues bounds the JSON values (objects, arrays, and the
// elements of both) of one answer a Client decodes: what the decoder
// builds, not only what it reads. An answer of 4 MiB made of empty
// objects ("[{},{},...]", three bytes each) would decode into some 1.4
// million structs of up to 200 bytes; a real answer spends 40 bytes or
// more of JSON on each value (a frame, a mutex), so the bound is past the
// largest a probe sends.
const maxAnswerValues = 1 << 17

// checkAnswerSize refuses an answer whose decoding would build more than
// maxAnswerValues values.
func checkAnswerSize(path string, b []byte) error {
	if n := jsonbudget.Values(b); n > maxAnswerValues {
		return fmt.Errorf("probe: %s: an answer of %d bytes holds %d JSON values, more than the %d a probe's answer takes: damaged or hostile, not decoded",
			path, len(b), n, maxAnswerValues)
	}
	return nil
}
