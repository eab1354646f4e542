# gear's build. `make run` starts a local cluster with the example app;
# `make test` runs every test (installing and starting what they need).
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod

.PHONY: build examples test unit race integ fuzz lint run bench deps clean faults

build:
	$(GO) build -o .build/gear .

examples:
	./scripts/build-examples.sh

# Packages whose tests start real clusters; they run one package at a time so
# their timing is not starved by other packages' tests on small machines.
SYSTEM_PKGS := ./test/... ./scripts/bench/...
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e '/test' -e '/scripts/bench')

# Everything CI runs: dependencies, vet, gofmt, all tests with the race detector.
test: deps examples lint
	$(GO) test -race -count=1 -timeout 30m $(UNIT_PKGS)
	$(GO) test -race -count=1 -timeout 40m -p 1 $(SYSTEM_PKGS)

unit:
	$(GO) test -count=1 -short ./...

race:
	$(GO) test -race -count=1 -timeout 30m $(UNIT_PKGS)
	$(GO) test -race -count=1 -timeout 40m -p 1 $(SYSTEM_PKGS)

integ: examples build
	$(GO) test -race -count=1 -timeout 30m -v ./test/...

fuzz:
	./scripts/fuzz.sh

# The fault suite (test/faults_test.go, needs root for network namespaces):
# `make faults SEED=7` replays the schedule a failed run printed;
# `make faults N=100` runs seeds 1..N and writes docs/FAULTS.md.
faults: examples
	GEAR_FAULTS_SEED=$(SEED) GEAR_FAULTS_N=$(N) GEAR_FAULTS_REPORT=$(if $(N),$(CURDIR)/docs/FAULTS.md) \
	  $(GO) test -count=1 -timeout 0 -v -run 'TestFaults$$' ./test/

lint:
	$(GO) vet ./...
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Installs the external programs the tests use (redis-server, java) if missing.
deps:
	./scripts/deps.sh

run: build examples
	./scripts/run-example.sh

bench: build examples
	./scripts/bench/run-all.sh

clean:
	rm -rf .build data conf/examples/*.tar.gz conf/examples/*.jar
