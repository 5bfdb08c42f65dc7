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
	$(GO) test ./rpc -run '^$$' -fuzz FuzzRequestValidators -fuzztime $(FUZZTIME)
	$(GO) test ./rpc -run '^$$' -fuzz FuzzSharedUpload -fuzztime $(FUZZTIME)
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

# --- A three-node cluster in containers (docker-compose.yml) ---------------
# Images are FROM scratch and hold the static binaries of `make build`: no
# base image is pulled. `docker compose` (v2) when the plugin exists, else
# docker-compose (v1). WORKERS pricing workers run beside the three nodes.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
COMPOSE_PROJECT ?= gridd
WORKERS ?= 2
CLUSTER_ADDRS := 127.0.0.1:21337,127.0.0.1:21338,127.0.0.1:21339

.PHONY: images cluster-up cluster-down

images: build
	docker build -q -f deploy/docker/gridd.Dockerfile -t gridd:dev $(BIN)
	docker build -q -f deploy/docker/pricing.Dockerfile -t gridd-pricing:dev $(BIN)

# Starts the cluster and returns once each node answers and knows a leader
# (60 s at most).
cluster-up: images
	$(COMPOSE) -p $(COMPOSE_PROJECT) up -d --scale worker=$(WORKERS)
	@for i in $$(seq 60); do \
		ok=0; for a in $$(tr , ' ' <<< "$(CLUSTER_ADDRS)"); do \
			$(BIN)/gridctl --addr $$a --timeout 2s cluster status -o json 2>/dev/null \
				| grep -q '"leaderId": *"[^"]' && ok=$$((ok+1)); \
		done; \
		if [ $$ok = 3 ]; then $(BIN)/gridctl --addr $(CLUSTER_ADDRS) cluster status; exit 0; fi; \
		sleep 1; \
	done; echo "cluster-up: the nodes did not agree on a leader within 60 s; see '$(COMPOSE) -p $(COMPOSE_PROJECT) logs'"; exit 1

# Removes the containers, the network and the nodes' volumes.
cluster-down:
	$(COMPOSE) -p $(COMPOSE_PROJECT) down --volumes --remove-orphans

# --- The same cluster with TLS everywhere (docker-compose.tls.yml) ---------
# Development certificates in ./certs, for the containers' names and fixed
# IPs and for loopback (the host's view). See docs/TLS.md.
DEV_CERTS ?= certs
TLS_FLAGS := --tls-ca $(DEV_CERTS)/ca.pem --tls-cert $(DEV_CERTS)/client.pem --tls-key $(DEV_CERTS)/client-key.pem

.PHONY: dev-certs cluster-up-tls

dev-certs: build
	$(BIN)/gridctl certs dev --out $(DEV_CERTS) --host n1,n2,n3,nodecache \
		--host 10.213.37.11,10.213.37.12,10.213.37.13,10.213.37.20

cluster-up-tls: images dev-certs
	$(COMPOSE) -p $(COMPOSE_PROJECT) -f docker-compose.yml -f docker-compose.tls.yml up -d --scale worker=$(WORKERS)
	@for i in $$(seq 60); do \
		if $(BIN)/gridctl --addr $(CLUSTER_ADDRS) --timeout 2s $(TLS_FLAGS) cluster status -o json 2>/dev/null \
			| grep -q '"leaderId": *"[^"]'; then $(BIN)/gridctl --addr $(CLUSTER_ADDRS) $(TLS_FLAGS) cluster status; exit 0; fi; \
		sleep 1; \
	done; echo "cluster-up-tls: no leader within 60 s; see '$(COMPOSE) -p $(COMPOSE_PROJECT) logs'"; exit 1
