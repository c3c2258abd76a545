# atlas-encryption-operator — `make help` lists the targets.
# Heavy builds are cached outside the clone, keyed by version, so a warm machine skips them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/atlas-encryption-operator
RUST_VERSION := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target-rust-$(RUST_VERSION)
export ATLAS_EO_CACHE_DIR := $(CACHE_DIR)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: fmt
fmt: ## format the Rust code
	cargo fmt --all

.PHONY: lint
lint: ## rustfmt check and clippy with warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

.PHONY: generate
GENERATED := crds docs/api-reference.md charts/atlas-encryption-operator/crds

generate: ## regenerate crds/, the chart's copy of them and docs/api-reference.md from the Rust types
	cargo run -q --bin crdgen -- --out crds --reference docs/api-reference.md
	$(MAKE) -s chart-sync-crds

.PHONY: check-generated
check-generated: generate ## fail when crds/, the chart's CRDs or the API reference are not what crdgen writes
	@git diff --exit-code -- $(GENERATED) || { echo "generated files are out of date: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); echo "generated files are untracked: run 'make generate' and commit"; exit 1; }

.PHONY: test-unit
test-unit: ## hermetic unit tests (no control plane needed)
	cargo test --workspace

.PHONY: test test-stages
# The suite runs with every folder beside the clone hidden (scripts/self-contained.sh), so it passes only
# when it needs nothing but the repository and the package registries.
test: ## everything, with nothing beside the clone readable: lint, generated files, chart, unit, simulator (official spec and Go SDK judges), integration and e2e tests on the local control plane, kstatus/Argo CD health
	bash scripts/self-contained.sh $(MAKE) test-stages

test-stages: ## the stages of `make test`, without hiding what lies beside the clone
	$(MAKE) lint
	$(MAKE) deny
	$(MAKE) check-generated
	$(MAKE) test-chart
	$(MAKE) test-unit
	$(MAKE) fuzz-seeds
	$(MAKE) test-sim
	$(MAKE) test-sdk
	$(MAKE) test-integration
	$(MAKE) test-health

# Concern-specific targets (test environment, simulator, chart, demo, bench) live in mk/.
-include mk/*.mk
