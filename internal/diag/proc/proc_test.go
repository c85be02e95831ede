package proc

import "testing"

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, in string
		want     Stat
		wantErr  bool
	}{
		{"plain", "42 (demo) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0",
			Stat{PID: 42, State: 'S', PPID: 1, PGID: 42, Start: 123456, Comm: "demo"}, false},
		{"cpu", "42 (demo) S 1 42 42 0 -1 4194560 1 0 0 0 17 5 0 0 20 0 1 0 123456 0 0",
			Stat{PID: 42, State: 'S', PPID: 1, PGID: 42, Start: 123456, Comm: "demo", CPU: 22}, false},
		{"comm with spaces and parens", "7 (a) b (c)) Z 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0",
			Stat{PID: 7, State: 'Z', PPID: 3, PGID: 7, Start: 99, Comm: "a) b (c)"}, false},
		{"truncated", "7 (x) S 1 2", Stat{}, true},
		{"garbage", "nothing here", Stat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.want.PID, []byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v; want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}
