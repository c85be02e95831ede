# lockwatch build, test and benchmark entry points. Needs only Go and the
# module proxy; tools are pinned in tools/go.mod.
GO        ?= go
# Tools are built from tools/go.mod outside the workspace (go.work: -modfile
# is refused in workspace mode); staticcheck then runs inside it, so that the
# etcd and postgres modules load against this checkout.
TOOL      := GOWORK=off $(GO) tool -modfile=$(CURDIR)/tools/go.mod
STATICCHECK = $$(GOWORK=off $(GO) tool -n -modfile=$(CURDIR)/tools/go.mod staticcheck)
BIN       := bin
# Static binaries: a cgo binary's main thread carries glibc's robust-futex
# list, which makes lockreg fall back to liveness polling (docs/architecture.md).
export CGO_ENABLED ?= 0
BENCH     ?= .
COUNT     ?= 6

.PHONY: all build test lint demo bench bench-compare stress-hostile stress clean cover docs-reports demo-etcd test-etcd build-etcd fuzz build-pg test-pg

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/lockwatch ./cmd/demo

## test: format check, vet, staticcheck, then every test under the race detector.
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 12m ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags nolockwatch ./sync
	@$(MAKE) --no-print-directory test-etcd
	@$(MAKE) --no-print-directory test-pg

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags nolockwatch ./sync
	$(GO) run ./internal/app/crosscheck ./sync ./internal/rt/inproc ./internal/rt/record ./internal/rt/seqlock ./internal/rt/heldset # every GOOS/GOARCH (go tool dist list)
	GOARCH=arm64 $(GO) vet ./sync ./internal/rt/inproc ./internal/rt/record ./internal/rt/seqlock ./internal/rt/heldset # the arm64 fast path, with its assembly
	$(STATICCHECK) ./...
	cd bench && GOWORK=off $(GO) vet -tags deadlock . # the comparison module (make bench-compare, outside the workspace) still builds

## demo: the demo pipeline in its hanging mode, under lockwatch, ending in the report.
## (Not echoed: the output is the demo's and lockwatch's only.)
demo: build
	@$(BIN)/lockwatch run --on-deadlock=kill -- $(BIN)/demo --hang; \
	  st=$$?; if [ $$st -eq 124 ]; then \
	    echo "(lockwatch exit status 124: deadlock found, as expected; the run is kept for 'lockwatch attach', 'lockwatch prune --all' removes it)"; \
	  else exit $$st; fi

## docs-reports: capture the reports shown in README.md and docs/tutorial.md
## again, from -trimpath builds (module paths, no machine paths).
docs-reports:
	@sh docs/capture-reports.sh

## bench: every benchmark, COUNT times, summarised by benchstat; then the
## comparison with go-deadlock (bench/, a module of its own).
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -count $(COUNT) ./... | tee bench.txt
	cd bench && GOWORK=off $(GO) test -tags deadlock -run '^$$' -bench '$(BENCH)' -count $(COUNT) . | tee ../bench-compare.txt
	$(TOOL) benchstat bench.txt
	$(TOOL) benchstat -col /impl bench-compare.txt

## bench-compare: lockreg against sync.Mutex, the CAS floor, go-deadlock, flock
## and OFD locks in one binary (bench/): uncontended, 2 processes on 1 lock,
## 1 and 8 processes on locks of their own, lock creation; prints benchstat
## and the ratio table of docs/benchmarks.md. BASE=/abs/path/of/another/checkout
## measures that one too, alternating with this tree, and prints old and new.
bench-compare:
	COUNT=$(COUNT) GO=$(GO) bench/compare.sh $(BASE)

## stress-hostile: the audit's hostile runs at full size (gigabytes of arena, info files, dictionaries, a 4.5 GB
## gzip bomb), each read by lockwatch in its own process within 256 MiB (docs/reliability.md); then their
## benchmark, for the figures.
stress-hostile:
	LOCKWATCH_STRESS=1 CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m -run 'Hostile' ./lockreg ./internal/app/cli
	CGO_ENABLED=1 $(GO) test -run '^$$' -bench 'BenchmarkHostile' -benchtime 3x -count 1 -timeout 60m ./internal/app/cli

## fuzz: every fuzz target (FUZZTARGETS: package and target), each for
## FUZZTIME, seeded from its package's seeds and the hostile cases
## (internal/app/hostile); prints each target's executions and new inputs, and
## stops at the first failure (the input is written under testdata/fuzz).
## FUZZFLAGS=-parallel=1 keeps it to one core.
FUZZTIME    ?= 60s
FUZZFLAGS   ?=
# Minimizing each new interesting input takes up to 60 s by default, during
# which nothing else is tried: with a short FUZZTIME it took all of it.
FUZZMINIMIZE ?= 1s
FUZZTARGETS ?= ./stackdump:FuzzParse ./stackdump:FuzzParseWithin ./stackdump:FuzzParseProfile \
  ./stackdump:FuzzParseTrace ./stackdump:FuzzDecodeDict ./lockreg:FuzzSnapshot ./probe:FuzzDecodeRequest \
  ./probe:FuzzDecodeAnswer ./internal/diag/proc:FuzzParseStat ./internal/diag/liveness:FuzzScanMaps \
  ./internal/diag/safeout:FuzzWriter ./internal/diag/jsonbudget:FuzzValues ./internal/app/pipeline:FuzzFrameReader \
  ./internal/diag/goproc:FuzzPclntab ./internal/source/filelocksrc:FuzzParse ./reportcmd:FuzzIndentJSON \
  ./internal/source/filelocksrc:FuzzParseLine ./postgres/pgsrc:FuzzAnswer ./postgres/pgsrc:FuzzParseLog
# A target of a module of its own (postgres/, etcd/) is run in its module.
fuzz:
	@for t in $(FUZZTARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; dir=.; \
	  case $$pkg in ./postgres/*|./etcd/*) dir=$${pkg#./}; dir=$${dir%%/*}; pkg=./$${pkg#./$$dir/};; esac; \
	  echo "== $$dir $$pkg $$name ($(FUZZTIME))"; \
	  out=$$(cd $$dir && $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $(FUZZFLAGS) $$pkg 2>&1); st=$$?; \
	  echo "$$out" | grep -E 'elapsed: .*execs' | tail -1; \
	  if [ $$st -ne 0 ]; then echo "$$out" | tail -40; exit 1; fi; \
	done

## stress: the reliability suite (internal/app/stress, build tag stress; not part of
## make test): kill storm, churn, hostile arenas; figures in docs/reliability.md.
## Static build, as shipped (the robust list needs it), so no race detector.
## LOCKWATCH_STRESS_CHURN sets the churn's count (default 100,000),
## LOCKWATCH_STRESS_STORM_PROCS and _ATTACHERS the kill storm's (64, 4).
STRESSTIMEOUT ?= 4h
stress:
	CGO_ENABLED=0 $(GO) test -tags stress -count=1 -v -timeout $(STRESSTIMEOUT) ./internal/app/stress

## cover: every test with coverage that counts the child processes the tests
## start: test binaries re-run with a role, and the lockwatch and demo
## binaries the tests build (with -cover when GOCOVERDIR is set). go test sets
## GOCOVERDIR to a directory of its own, which children's counters do not
## leave, so each package's test binary is built with 'go test -c' and run
## in its directory with GOCOVERDIR=$(COVERDIR)/data; covdata merges every
## process's counters into per-package percentages (docs/coverage.md) and a
## profile for 'go tool cover -html'.
COVERDIR  ?= $(CURDIR)/coverage
COVERPKG  := github.com/lockwatch/lockwatch/...
cover:
	rm -rf $(COVERDIR) && mkdir -p $(COVERDIR)/data $(COVERDIR)/bin
	@st=0; for p in $$($(GO) list ./...); do \
	  t=$(COVERDIR)/bin/$$(echo $$p | tr / _).test; \
	  CGO_ENABLED=1 $(GO) test -c -cover -coverpkg=$(COVERPKG) -o $$t $$p || { st=1; continue; }; \
	  [ -x $$t ] || continue; \
	  echo "== $$p"; \
	  (cd $$($(GO) list -f '{{.Dir}}' $$p) && GOCOVERDIR=$(COVERDIR)/data $$t -test.count=1 -test.timeout=15m \
	    -test.gocoverdir=$(COVERDIR)/data) > $$t.log 2>&1 || { st=1; cat $$t.log; }; \
	  tail -1 $$t.log; \
	done; \
	$(GO) tool covdata percent -i=$(COVERDIR)/data | sort && \
	$(GO) tool covdata textfmt -i=$(COVERDIR)/data -o $(COVERDIR)/cover.out && exit $$st

clean:
	rm -rf $(BIN) bench.txt bench-compare.txt bench-compare-old.txt coverage

## build-etcd: lockwatch-etcd (which lockwatch runs for etcd runs: attach
## etcd://HOST:PORT/RUN, run --etcd/--backend etcd) and demo-etcd, in bin/
## beside lockwatch. The etcd backend is a module of its own (etcd/), so
## nothing that 'build' makes links etcd.
build-etcd:
	cd etcd && $(GO) build -trimpath -o ../$(BIN)/ ./cmd/lockwatch-etcd ./cmd/demo-etcd

## demo-etcd: the demo with its lock in etcd (an embedded server unless
## ETCD=ENDPOINTS), deadlocking as 'make demo' does, under lockwatch.
ETCD ?=
demo-etcd: build build-etcd
	@$(BIN)/lockwatch run --on-deadlock=kill $(if $(ETCD),--etcd $(ETCD),--backend etcd) -- $(BIN)/demo-etcd --backend etcd; \
	  st=$$?; if [ $$st -eq 124 ]; then \
	    echo "(lockwatch exit status 124: deadlock found, as expected)"; \
	  else exit $$st; fi

## test-etcd: the etcd backend's vet, staticcheck and tests (real processes
## against an embedded etcd), under the race detector; part of 'make test'.
## Its cost: docs/benchmarks.md, "The etcd tests in make test".
test-etcd:
	cd etcd && $(GO) vet ./... && $(STATICCHECK) ./...
	cd etcd && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

## build-pg: lockwatch-pg (which lockwatch runs for attach/watch
## postgres://...), in bin/ beside lockwatch. The PostgreSQL backend is a
## module of its own (postgres/), so nothing that 'build' makes links a
## PostgreSQL driver.
build-pg:
	cd postgres && $(GO) build -trimpath -o ../$(BIN)/ ./cmd/lockwatch-pg

## test-pg: the PostgreSQL backend's vet, staticcheck and tests, under the
## race detector, against a private server the tests start (initdb and
## postgres from /usr/lib/postgresql/*/bin, as the user postgres or nobody
## when run as root) or $$LOCKWATCH_TEST_POSTGRES; skipped with a note when
## neither exists. Part of 'make test'. Its cost: docs/benchmarks.md.
test-pg:
	cd postgres && $(GO) vet ./... && $(STATICCHECK) ./...
	cd postgres && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m ./...
