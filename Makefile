# flashsale: `make test` is the test command (README, CI via .ci/run).
GO ?= go
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt
BIN := bin
# Extra arguments for `make run`, e.g. make run ARGS='--listen 127.0.0.1:9090'.
ARGS ?=

# Go files checked by gofmt (testdata may hold deliberately odd files).
GO_FILES_CMD := find . -name '*.go' -not -path './.git/*' -not -path './vendor/*' \
	-not -path './.flashsale/*' -not -path '*/testdata/*' -print0

.PHONY: all services build run test test-short bench migrate fmt fmt-check vet clean

all: build

# Local Redis and MariaDB (installs and starts them when needed; fast when up).
services:
	deploy/services.sh

build:
	$(GO) build -o $(BIN)/flashsale ./cmd/flashsale
	$(GO) build -o $(BIN)/loadgen ./cmd/loadgen

run: services build
	./$(BIN)/flashsale serve --dev $(ARGS)

test: services vet fmt-check
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: services vet fmt-check
	$(GO) test -race -count=1 -short -timeout 20m ./...

bench: services
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

migrate: services build
	./$(BIN)/flashsale migrate

fmt:
	$(GO_FILES_CMD) | xargs -0 -r $(GOFMT) -w

# Fails listing the files gofmt would change.
fmt-check:
	@files="$$($(GO_FILES_CMD) | xargs -0 -r $(GOFMT) -l)" || exit 1; \
	if [ -n "$$files" ]; then echo "gofmt needed (run make fmt):"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN) .flashsale
