# atlas-sim: the Atlas Administration API simulator (see atlas-sim/README.md).

SIM_LISTEN ?= 127.0.0.1:8090
SIM_SEED ?= $(wildcard config/dev/atlas-sim-seed.yaml)
SIM_ARGS ?=

.PHONY: sim
sim: ## run the Atlas API simulator (config/dev seed if present; SIM_LISTEN, SIM_ARGS)
	cargo run -q -p atlas-sim --bin atlas-sim -- serve --listen $(SIM_LISTEN) $(if $(SIM_SEED),--seed $(SIM_SEED)) $(SIM_ARGS)

.PHONY: test-sim
test-sim: ## simulator tests: conformance + moto-backed checks (moto required) + schemathesis
	@set -euo pipefail; \
	if [ -x scripts/testenv.sh ] || [ -f scripts/testenv.sh ]; then \
	  bash scripts/testenv.sh up >&2; \
	  eval "$$(bash scripts/testenv.sh env)"; \
	fi; \
	ATLAS_SIM_REQUIRE_MOTO=1 cargo test -p atlas-sim; \
	bash atlas-sim/tests/schemathesis/run.sh

.PHONY: test-sdk
test-sdk: ## official Atlas Go SDK as a judge of the simulator: whole EAR flow, digest key + service account (moto)
	bash tests/atlas-sdk/run.sh

.PHONY: bench-sim
bench-sim: ## loopback throughput/latency benchmark of the simulator (release build)
	cargo run -q --release -p atlas-sim --bin atlas-sim-bench -- --seconds $(or $(BENCH_SECONDS),5) --workers $(or $(BENCH_WORKERS),8)
