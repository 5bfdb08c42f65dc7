# gridd build. `make run` and `make test` install what they need themselves.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
BIN := bin
PROTOC_GEN_GO := $(GOBIN)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(GOBIN)/protoc-gen-go-grpc
STATICCHECK := $(GOBIN)/staticcheck
export PATH := $(GOBIN):$(PATH)

.PHONY: all build run test test-short proto lint fuzz bench clean tools

all: build

# Static binaries of the commands and of the examples `make run` starts
# (bin/gridd, bin/gridctl, bin/montecarlo, bin/demo).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/... ./examples/...

run: build
	./scripts/demo.sh

# The default test run: every package, the race detector on, well under 15
# minutes on 2 cores.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

$(PROTOC_GEN_GO):
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

$(PROTOC_GEN_GO_GRPC):
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: protoc
protoc:
	@command -v protoc >/dev/null || { echo "installing protoc (protobuf-compiler) with apt"; \
		(apt-get update -qq && apt-get install -y -qq protobuf-compiler) || \
		(sudo apt-get update -qq && sudo apt-get install -y -qq protobuf-compiler); }

# Regenerates the committed protobuf code.
proto: protoc $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		rpc/griddpb/gridd.proto fsm/fsmpb/command.proto

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./fsm -run '^$$' -fuzz FuzzDecodeCommand -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz FuzzRestore -fuzztime $(FUZZTIME)
	$(GO) test ./rpc -run '^$$' -fuzz FuzzValidateBatch -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/gridd -run '^$$' -fuzz FuzzConfig -fuzztime $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./queue ./fsm

clean:
	rm -rf $(BIN)

# The jepsen/ failure-injection suite: brings up the docker-compose cluster
# from empty volumes, injects faults for 5 minutes (seeded; the seed is
# printed) and checks the history; results in jepsen/results/<timestamp>/.
# Needs Docker. `make jepsen JEPSEN_ARGS=--short` runs 2 minutes;
# `JEPSEN_ARGS="--seed N"` replays a schedule.
JEPSEN_ARGS ?=
.PHONY: jepsen
jepsen: images
	$(GO) run ./jepsen/cmd/jepsen $(JEPSEN_ARGS)
