# Status health: kstatus and Argo CD over the status snapshots the e2e tests write (scripts/health.sh).
# Run after test-integration (which writes the snapshots); the committed fixtures are checked as well.

HEALTH := scripts/health.sh

.PHONY: test-health argocd-health

test-health: ## kstatus (real library) and the Argo CD Lua health check agree on every e2e status snapshot
	bash $(HEALTH) test

argocd-health: ## regenerate config/argocd/argocd-cm-health.yaml from config/argocd/health.lua
	bash $(HEALTH) generate
