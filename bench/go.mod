module github.com/lockwatch/lockwatch/bench

go 1.26.0

replace github.com/lockwatch/lockwatch => ../

require (
	github.com/go-delve/delve v1.27.2
	github.com/linkdata/deadlock v0.5.5
	github.com/lockwatch/lockwatch v0.0.0-00010101000000-000000000000
	github.com/sasha-s/go-deadlock v0.3.9
	golang.org/x/sys v0.50.0
)

require (
	github.com/cilium/ebpf v0.22.0 // indirect
	github.com/google/pprof v0.0.0-20261105003125-4bf881d7fb0b // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/petermattis/goid v0.0.0-20261109124353-7cfa343ad0ab // indirect
	golang.org/x/arch v0.28.0 // indirect
	golang.org/x/exp v0.0.0-20261113113407-e3970619a1a4 // indirect
	golang.org/x/telemetry v0.0.0-20241106142447-58a1122356f5 // indirect
)
