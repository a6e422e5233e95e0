# 1588-pizza. `make run` and `make test` are the two commands; the rest serve them.
SHELL := /bin/bash
GO    ?= go

.PHONY: run run-split test chaos infra browser migrate generate bench lint fmt tidy check

## run: bring up PostgreSQL and RabbitMQ, migrate, and serve every component in one process. It
## listens on loopback (PIZZA_HTTP_ADDR, default 127.0.0.1:8080); once every component is ready
## it prints the URLs and a token per role, the last thing on screen (logs at warn unless
## PIZZA_LOG_LEVEL says otherwise). Ctrl-C stops it.
run: infra
	@mkdir -p bin && $(GO) build -o bin/pizza ./cmd/pizza
	@export PIZZA_LOG_LEVEL=$${PIZZA_LOG_LEVEL:-warn}; bin/pizza migrate && bin/pizza serve

## run-split: every component its own process, two replicas of order, store and the BFF (the
## second on port + 1000), on the addresses make run uses; logs in bin/run-split/, then a summary
run-split: infra
	@./scripts/run-split.sh

## test: bring up PostgreSQL and RabbitMQ (and Debian's chromium for the console's browser tests),
## then every test against them; the browser tests leave screenshots in bin/screenshots/
test: infra browser
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

## chaos: the fault suite at length: each scenario (TestChaos/*) under a steady load of orders for
## PIZZA_CHAOS (default 2m), one after another, then the checker's table. Loopback only; never part of make test.
PIZZA_CHAOS ?= 2m
chaos: infra
	set -o pipefail; PIZZA_CHAOS=$(PIZZA_CHAOS) $(GO) test -count=1 -run '^TestChaos' -parallel 1 -v -timeout 90m ./cmd/pizza/ | grep -v '^=== \(RUN\|PAUSE\|CONT\)'

## infra: start PostgreSQL and RabbitMQ when they do not answer (idempotent)
infra:
	@./scripts/infra-up.sh

## browser: install Debian's chromium when there is none (the browser tests never download one)
browser:
	@./scripts/browser-up.sh >/dev/null

migrate: infra
	$(GO) run ./cmd/pizza migrate

## generate: regenerate committed generated code
generate:
	$(GO) generate ./...

## bench: the whole system against its pgx baseline (20 s a phase; BENCH_FLAGS= for a full 60 s run),
## then the outbox's micro-benchmarks and the console's numbers (its JavaScript, the first row, push
## latency beside a bare graphql-ws client); the system's results are appended to BENCHMARKS.md.
## Never part of make test.
BENCH_FLAGS ?= --short
bench: infra browser
	$(GO) run ./cmd/pizza bench $(BENCH_FLAGS) --record BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchtime 2s ./outbox/
	set -o pipefail; PIZZA_CONSOLE_BENCH=30 $(GO) test -count=1 -run '^TestConsoleBench$$' -v ./cmd/pizza/ | grep -v '^=== '

lint: fmt
	$(GO) vet ./...

fmt:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

tidy:
	$(GO) mod tidy
