# Scale benchmark (bench/README.md): the operator's release binary on the local control plane, atlas-sim
# and moto. Flags: BENCH_SCALES, BENCH_LATENCY_MS, BENCH_CLUSTER_UPDATE_MS, BENCH_CONCURRENCY, BENCH_RATE,
# BENCH_RESYNC_S, BENCH_IDLE_S, BENCH_THROTTLE_SCALE (0 = skip), BENCH_CROWDED_NAMESPACES (0 = skip),
# BENCH_PUBLISHED_SCALES / BENCH_PUBLISHED_TIGHT_SCALES (atlas-sim publishes generous / tight limits at
# GET /rateLimits and the operator runs without a ceiling; 0 = skip),
# BENCH_ARGS (anything else atlas-eo-bench takes: cargo run -p atlas-eo-bench -- --help).
BENCH_SCALES ?= 10,100,1000
BENCH_LATENCY_MS ?= 50
BENCH_CLUSTER_UPDATE_MS ?= 3000
BENCH_CONCURRENCY ?= 16
BENCH_RATE ?= 100
BENCH_RESYNC_S ?= 60
BENCH_IDLE_S ?= 120
BENCH_THROTTLE_SCALE ?= 100
BENCH_CROWDED_NAMESPACES ?= 4000
BENCH_PUBLISHED_SCALES ?= 50,200
BENCH_PUBLISHED_TIGHT_SCALES ?= 10,100
BENCH_ARGS ?=

.PHONY: bench
bench: ## scale benchmark: 10/100/1000 projects × 5 clusters, rotation, steady state, rate limits, crowded cluster
	cargo build --release -p atlas-encryption-operator -p atlas-sim -p atlas-eo-bench --bin atlas-encryption-operator --bin atlas-sim --bin atlas-eo-bench
	scripts/testenv.sh up >/dev/null
	kubectl_env="$$(scripts/testenv.sh env)" && eval "$$kubectl_env" && \
	  kubectl apply --server-side --force-conflicts -f crds/ >/dev/null && \
	  kubectl wait --for=condition=Established --timeout=60s \
	    crd/projectencryptions.encryption.atlasops.dev crd/clusterencryptions.encryption.atlasops.dev >/dev/null && \
	  $(CARGO_TARGET_DIR)/release/atlas-eo-bench --scales $(BENCH_SCALES) --latency-ms $(BENCH_LATENCY_MS) \
	    --cluster-update-ms $(BENCH_CLUSTER_UPDATE_MS) --concurrency $(BENCH_CONCURRENCY) --rate $(BENCH_RATE) \
	    --resync-s $(BENCH_RESYNC_S) --idle-s $(BENCH_IDLE_S) --throttle-scale $(BENCH_THROTTLE_SCALE) \
	    --crowded-namespaces $(BENCH_CROWDED_NAMESPACES) --published-scales $(BENCH_PUBLISHED_SCALES) \
	    --published-tight-scales $(BENCH_PUBLISHED_TIGHT_SCALES) $(BENCH_ARGS)

.PHONY: bench-clean
bench-clean: ## delete the crowded cluster's 4,000 namespaces the bench leaves for reuse
	eval "$$(scripts/testenv.sh env)" && $(CARGO_TARGET_DIR)/release/atlas-eo-bench --clean
