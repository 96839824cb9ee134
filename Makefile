# flashsale: `make test` is the test command (README, CI via .ci/run).
GO ?= go
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt
BIN := bin
# Extra arguments for `make run`, e.g. make run ARGS='--listen 127.0.0.1:9090'.
ARGS ?=
# The version stamped into the binary (`flashsale version`, logged by serve):
# the commit, with -dirty when the tree has changes; "dev" outside git.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s

# Go files checked by gofmt (testdata may hold deliberately odd files).
GO_FILES_CMD := find . -name '*.go' -not -path './.git/*' -not -path './vendor/*' \
	-not -path './.flashsale/*' -not -path '*/testdata/*' -print0

.PHONY: all services build run test test-short bench fuzz migrate fmt fmt-check vet clean lint-deploy

all: build

# Local Redis and MariaDB (installs and starts them when needed; fast when up).
services:
	deploy/services.sh

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/flashsale ./cmd/flashsale
	$(GO) build -o $(BIN)/loadgen ./cmd/loadgen
	$(GO) build -o $(BIN)/sockbench ./cmd/sockbench

run: services build
	./$(BIN)/flashsale serve --dev $(ARGS)

test: services vet fmt-check
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: services vet fmt-check
	$(GO) test -race -count=1 -short -timeout 20m ./...

bench: services
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# Runs every fuzz target of every package for FUZZTIME each (`make test`
# runs their committed corpora as plain tests). New failing inputs land in
# the package's testdata/fuzz: commit them with the fix.
fuzz: services
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# The Helm chart (deploy/kubernetes/flashsale): helm lint and helm template
# with every feature on, then deploy/helm_test.go, which checks the rendered
# objects and runs each role's pod as a local process on the local stores.
# helm is built with `go install` at a pinned version into ./bin, once.
HELM_VERSION := v4.3.2
HELM := $(BIN)/helm
CHART := deploy/kubernetes/flashsale
lint-deploy: services $(BIN)/.helm-$(HELM_VERSION)
	$(HELM) lint --strict $(CHART) -f $(CHART)/ci/lint-values.yaml
	$(HELM) template flashsale $(CHART) -f $(CHART)/ci/lint-values.yaml >/dev/null
	FLASHSALE_HELM=$(abspath $(HELM)) $(GO) test -race -count=1 -run '^TestHelm' ./deploy/

$(BIN)/.helm-$(HELM_VERSION):
	GOBIN=$(abspath $(BIN)) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	touch $@

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
