package lockstate_test

import (
	"testing"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
)

func TestReasonOf(t *testing.T) {
	tests := []struct {
		st   procid.Status
		want lockstate.Reason
	}{
		{procid.Unknown, ""},
		{procid.Alive, ""},
		{procid.Gone, lockstate.Gone},
		{procid.Zombie, lockstate.Zombie},
		{procid.Reused, lockstate.Reused},
		{procid.Expired, lockstate.LeaseExpired},
	}
	for _, tt := range tests {
		if got := lockstate.ReasonOf(tt.st); got != tt.want {
			t.Errorf("ReasonOf(%v) = %q; want %q", tt.st, got, tt.want)
		}
		if (tt.want != "") != tt.st.Dead() {
			t.Errorf("ReasonOf(%v) = %q, but Dead() = %v", tt.st, tt.want, tt.st.Dead())
		}
	}
}

func TestKey(t *testing.T) {
	a := lockstate.Lock{Kind: "mutex", Name: "q"}
	b := lockstate.Lock{Kind: "etcd", Name: "q"}
	if a.Key() == b.Key() || a.Key() != (lockstate.Key{Kind: "mutex", Name: "q"}) {
		t.Errorf("got keys %v and %v; want locks told apart by kind", a.Key(), b.Key())
	}
}
