# Local test ground: real kube-apiserver + etcd + kube-controller-manager and moto (scripts/testenv.sh).
# The Kubernetes binaries and the Python venv are cached under $(ATLAS_EO_CACHE_DIR); a warm machine skips both builds.

TESTENV := scripts/testenv.sh

.PHONY: testenv-build testenv-up testenv-down testenv-status test-integration

testenv-build: ## build (or reuse) the cached kube-apiserver, kube-controller-manager, kubectl and etcd
	$(TESTENV) build

testenv-up: ## start the local control plane and moto (idempotent); prints the KUBECONFIG to export
	$(TESTENV) up

testenv-down: ## stop the local control plane and moto and remove their state
	$(TESTENV) down

testenv-status: ## tell whether the local control plane and moto are up
	$(TESTENV) status

# The env file is sourced so tests see the same KUBECONFIG and MOTO_ENDPOINT a developer gets.
# On CI the environment is torn down afterwards (keeping the test result) so no daemon outlives the run.
# What the suite produces (operator logs, each test namespace's Events and objects) is collected in
# $TESTENV_DIR/e2e and scanned for the credentials it used once every other test has run.
test-integration: testenv-up ## integration tests against the local control plane and moto, then the secret scan
	@set -a; source "$${TESTENV_DIR:-.testenv}/env"; set +a; \
	rm -rf "$$TESTENV_DIR/e2e"; \
	rc=0; cargo test --workspace --features integration -- --test-threads=4 || rc=$$?; \
	if [ $$rc = 0 ]; then \
	  cargo test --features integration --test secret_scan -- --ignored --nocapture || rc=$$?; \
	fi; \
	if [ "$${CI:-}" = true ]; then $(TESTENV) down || true; fi; \
	exit $$rc
