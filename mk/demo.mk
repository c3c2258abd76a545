# The demo: the whole story on one machine (scripts/demo.sh). Leaves everything running; demo-down stops it.

.PHONY: demo demo-down

demo: ## build and start everything locally (control plane, moto, atlas-sim, operator) and walk the encryption story
	bash scripts/demo.sh up

demo-down: ## stop what `make demo` started (operator, atlas-sim, control plane, moto)
	bash scripts/demo.sh down
