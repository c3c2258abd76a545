# Supply chain and fuzzing (docs/reliability.md). Tools are installed once per machine into the cache by
# scripts/cargo-tool.sh, at pinned versions.

CARGO_DENY_VERSION := 0.20.2
CARGO_FUZZ_VERSION := 0.13.2

# --- cargo-deny ------------------------------------------------------------------------------------------
# The advisories check needs the RustSec advisory database, which cargo-deny clones from GitHub; no package
# registry carries it. Point ADVISORY_DB at a git checkout of it to run the check offline; without one,
# `make deny` runs licenses, bans and sources and says that advisories were skipped.
ADVISORY_DB ?=
DENY_CHECKS := licenses bans sources

.PHONY: deny
deny: ## cargo-deny: licenses, bans, sources (+ advisories when ADVISORY_DB is a RustSec advisory-db checkout)
	@set -euo pipefail; \
	deny="$$(scripts/cargo-tool.sh cargo-deny $(CARGO_DENY_VERSION))"; \
	"$$deny" --version; \
	"$$deny" --all-features check $(DENY_CHECKS); \
	if [ -n "$(ADVISORY_DB)" ]; then \
	  dbs="$$(mktemp -d)"; trap 'rm -rf "$$dbs"' EXIT; \
	  cp -r "$(ADVISORY_DB)" "$$dbs/advisory-db-3157b0e258782691"; \
	  sed "s|^\[advisories\]|[advisories]\ndb-path = \"$$dbs\"|" deny.toml > "$$dbs/deny.toml"; \
	  echo "deny: advisories from $(ADVISORY_DB) of $$(git -C "$(ADVISORY_DB)" log -1 --format=%cs 2>/dev/null || echo '(date unknown)')"; \
	  "$$deny" --offline --all-features --config "$$dbs/deny.toml" check advisories -W unmaintained; \
	else \
	  echo "deny: advisories NOT checked: set ADVISORY_DB to a checkout of the RustSec advisory-db (docs/reliability.md)"; \
	fi

# --- fuzzing ---------------------------------------------------------------------------------------------
# cargo-fuzz on the pinned stable toolchain: RUSTC_BOOTSTRAP=1 lets it pass its -Z flags, and the
# harnesses are safe Rust, so no sanitizer (-s none) keeps the instrumented build small and fast.
FUZZ_TARGETS ?= atlas_response atlas_error aws_ids aws_ids_structured
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SANITIZER ?= none
FUZZ_TARGET_DIR ?= $(CACHE_DIR)/fuzz-target-rust-$(RUST_VERSION)
FUZZ_ARGS ?=

define fuzz_run
	@set -euo pipefail; \
	fuzz="$$(scripts/cargo-tool.sh cargo-fuzz $(CARGO_FUZZ_VERSION))"; \
	export RUSTC_BOOTSTRAP=1; \
	"$$fuzz" fuzz build -s $(FUZZ_SANITIZER) --target-dir "$(FUZZ_TARGET_DIR)"; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
	  echo "== fuzz $$t for $(1) s"; \
	  rc=0; "$$fuzz" fuzz run -s $(FUZZ_SANITIZER) --target-dir "$(FUZZ_TARGET_DIR)" $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(1) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=fuzz/artifacts/$$t/ $(FUZZ_ARGS) > fuzz/artifacts/$$t/last-run.log 2>&1 || rc=$$?; \
	  grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|Done [0-9]+ runs|==[0-9]+== ERROR|SUMMARY|thread .* panicked|Test unit written)' \
	    fuzz/artifacts/$$t/last-run.log || true; \
	  if [ "$$rc" -ne 0 ]; then tail -40 fuzz/artifacts/$$t/last-run.log; echo "fuzz $$t FAILED (exit $$rc): see fuzz/artifacts/$$t/"; exit 1; fi; \
	done
endef

.PHONY: fuzz fuzz-smoke fuzz-seeds
fuzz: ## run every fuzz target for FUZZ_SECONDS each (default 300); corpus and crashes under fuzz/
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-seeds ## CI: the seeds replayed on stable, then every fuzz target for FUZZ_SMOKE_SECONDS (default 20)
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

fuzz-seeds: ## replay the checked-in fuzz seeds (and the included modules' unit tests) without libFuzzer
	CARGO_TARGET_DIR="$(FUZZ_TARGET_DIR)-test" cargo test --manifest-path fuzz/Cargo.toml --lib
