# Shoal build. `make up` brings up the demo; `make test` runs every test.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := bin
PREFIX  ?= /usr/local
GOFLAGS_BUILD := -trimpath

.PHONY: all build deps install test test-unit test-e2e vet fmt clean up down bench

all: build

deps:
	@./scripts/install-deps.sh

# shoal-shim must be static: it is also bind-mounted into containers as
# their --init.
build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/shoald ./cmd/shoal
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/shoal-shim

install: build
	install -m 0755 $(BIN)/shoald $(BIN)/shoal $(BIN)/shoal-shim $(PREFIX)/bin/

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .

# Every test: unit tests (no root needed) and, as root, end-to-end tests
# against real runc, namespaces and nftables.
test: deps build
	./scripts/test.sh

test-unit:
	$(GO) test ./...

# A local cluster (three hosts in network namespaces) with a demo service.
up:
	@./scripts/up.sh

down:
	@PATH=/usr/local/bin:$$PATH shoal lab down

clean:
	rm -rf $(BIN)
