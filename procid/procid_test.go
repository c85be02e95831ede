package procid_test

import (
	"fmt"
	"testing"

	"github.com/lockwatch/lockwatch/procid"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		s    procid.Status
		name string
		dead bool
	}{
		{procid.Unknown, "unknown", false},
		{procid.Alive, "alive", false},
		{procid.Zombie, "zombie", true},
		{procid.Gone, "dead", true},
		{procid.Reused, "reused", true},
		{procid.Expired, "expired", true},
		{procid.Status(42), "Status(42)", false},
		{procid.Status(-1), "Status(-1)", false},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.name {
			t.Errorf("String() = %q; want %q", got, tt.name)
		}
		if got := tt.s.Dead(); got != tt.dead {
			t.Errorf("%v.Dead() = %v; want %v", tt.s, got, tt.dead)
		}
	}
}

func ExampleID() {
	local := procid.ID{PID: 4242, Start: 1234567}
	remote := procid.ID{Host: "worker-3", PID: 4242, Start: 1234567}
	fmt.Println(local, remote, local == remote, procid.ID{}.IsZero())
	// Output: 4242@1234567 worker-3/4242@1234567 false true
}
