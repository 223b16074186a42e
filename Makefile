# seckill: every routine task. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# nextest when installed (one process per test), cargo test otherwise.
TEST_RUNNER := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo "nextest run --no-fail-fast" || echo "test --no-fail-fast")
MIGRATE ?= status
# The operator's command: `seckill-ctl --help` lists its subcommands.
CTL := $(CARGO) run --release -q -p ctl --bin seckill-ctl --

.DEFAULT_GOAL := help
.PHONY: help deps deps-redis redis-cluster redis-cluster-stop build release test fuzz lint fmt demo bench bench-buckets stack openapi migrate topics lag dlq-inspect dlq-replay release-order reconcile deploy-render deploy-check run-gateway run-worker run-replayer clean
OVERLAY ?= dev

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

deps: ## Install (apt) and start what the tests need: build tools, redis-server, PostgreSQL
	@scripts/deps.sh all

deps-redis: ## Install and start only what the demo needs: build tools and redis-server
	@scripts/deps.sh redis

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

release: ## Build the service binaries (release)
	$(CARGO) build --release --workspace --bins

test: deps deploy-check ## Run all tests (local Redis and PostgreSQL, embedded Kafka), the deploy/ checks and the HTTP fuzzer
	$(CARGO) $(TEST_RUNNER) --workspace
	scripts/fuzz.sh

fuzz: deps ## Fuzz the gateway's HTTP API from its OpenAPI document (schemathesis, a few thousand requests)
	scripts/fuzz.sh

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

demo: deps-redis ## Simulate a flash sale end to end on embedded defaults and print the verdict (WAITING_ROOM=1: the crowd behind a waiting room)
	$(CARGO) run --release -q -p flash-sim --bin seckill-sim -- $(if $(WAITING_ROOM),room --compare,demo) $(ARGS)

bench: ## Benchmark (a few minutes): each path under seckill-sim load next to its ceiling of the same run; writes docs/benchmarks.md and docs/bench/chart.svg
	@scripts/deps.sh bench
	scripts/bench.sh

bench-buckets: ## One hot SKU on a local Redis Cluster in 1 and in 12 stock buckets: where the cluster's CPU goes, per primary
	@scripts/deps.sh bench
	scripts/bench_buckets.sh

redis-cluster: deps-redis ## Start a local Redis Cluster (6 nodes, ports 7000-7005) and print the settings that use it
	@scripts/redis-cluster.sh start

redis-cluster-stop: ## Stop the local Redis Cluster
	@scripts/redis-cluster.sh stop

stack: deps-redis ## Run the whole pipeline on embedded defaults until Ctrl-C (prints ports and tokens)
	$(CARGO) run --release -q -p flash-sim --bin seckill-sim -- stack

migrate: ## Schema migrations: make migrate MIGRATE=up|down|status (database from the settings)
	$(CTL) migrate $(MIGRATE)

topics: ## Create the Kafka topics on the brokers of SECKILL__KAFKA__BOOTSTRAP_SERVERS
	$(CTL) topics

lag: ## Print consumer lag per partition (worker and replayer groups)
	$(CTL) lag

dlq-inspect: ## List the dead letters not yet settled (reason, age, order, attempts, trace id)
	$(CTL) dlq inspect

dlq-replay: ## Republish unsettled dead letters of one reason: make dlq-replay REASON=retries_exhausted [DRY_RUN=1]
	@test -n "$(REASON)" || { echo "usage: make dlq-replay REASON=<reason code> [DRY_RUN=1] (reasons: make dlq-inspect)"; exit 2; }
	$(CTL) dlq replay --reason $(REASON) $(if $(DRY_RUN),--dry-run)

release-order: ## Give back the units of one order's reservation (an abandoned dead letter, an unpublishable reservation): make release-order ORDER=<order id>
	@test -n "$(ORDER)" || { echo "usage: make release-order ORDER=<order id>"; exit 2; }
	$(CTL) release --order $(ORDER)

reconcile: ## Rebuild in Redis the sales Redis lost, from the database (after a Redis restart): make reconcile [SKU=... [REBUILD=1]]
	$(CTL) reconcile $(if $(SKU),--sku $(SKU)) $(if $(filter 1,$(REBUILD)),--rebuild)

openapi: ## Write the OpenAPI document the gateway serves at /openapi.json to docs/openapi.json
	$(CARGO) run -q -p gateway --bin seckill-gateway -- openapi > docs/openapi.json

deploy-render: ## Render the Kubernetes manifests of an overlay: make deploy-render OVERLAY=dev|prod|prod-redis-cluster
	kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

deploy-check: ## Validate deploy/ offline: kustomize, Kubernetes schemas, promtool rules, dashboard, compose
	scripts/check-deploy.sh

run-gateway: ## Run the gateway with the settings of this shell (SECKILL__* variables, config/)
	$(CARGO) run --release -q -p gateway --bin seckill-gateway

run-worker: ## Run the order worker with the settings of this shell
	$(CARGO) run --release -q -p order-worker --bin seckill-order-worker

run-replayer: ## Run the dead-letter replayer with the settings of this shell
	$(CARGO) run --release -q -p dlq-replayer --bin seckill-dlq-replayer -- run

clean: ## Remove build output and the local SQLite database
	$(CARGO) clean
	rm -rf var
