# One command each: `make test` (install, lint, build the local cluster if missing, all tests)
# and `make demo` (the operator's main job on the local cluster).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint verify unit e2e test test-image bench crd manifests monitoring toolchain demo demo-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests e2e scripts benchmarks
	$(BIN)/ruff format --check operator tests e2e scripts benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

# Regenerate the CRD from the models (a unit test fails while crds/ is stale).
crd: $(STAMP)
	$(BIN)/finetune-operator crd > crds/finetune.aidaptiv.io_finetunejobs.yaml
	cp crds/finetune.aidaptiv.io_finetunejobs.yaml deploy/helm/finetune-operator/crds/

# Regenerate deploy/manifests/ from the operator's Helm chart (a unit test fails while they are stale).
manifests: $(STAMP) toolchain crd monitoring
	$(BIN)/python scripts/render_manifests.py --helm "$$(e2e/cluster bin-dir)/helm"

# Regenerate the alert rules and the Grafana dashboard (deploy/monitoring/ and the chart's copies; unit
# tests fail while they are stale).
monitoring: $(STAMP)
	$(BIN)/python scripts/alert_rules.py
	$(BIN)/python scripts/dashboard.py

toolchain:
	e2e/cluster build

# The operator's image from the Dockerfile, built with buildah on a cached local Debian base
# (scripts/image: installs buildah/podman/runc/debootstrap if missing; rebuilds only on changed inputs).
.PHONY: image
image:
	bash scripts/image build

unit: $(STAMP)
	bash scripts/pytest-strict $(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# The fast loop before a commit: ruff, import contracts, mypy --strict and the unit tests (no cluster).
verify: lint unit

e2e: $(STAMP) toolchain
	bash scripts/pytest-strict $(BIN)/python -m pytest -m e2e $(PYTEST_ARGS)

# The image needs root (rootful buildah, apt); in CI it is always built and its e2e test always runs.
test-image:
	@if [ "$$(id -u)" = 0 ] || [ -n "$$CI" ]; then bash scripts/image build; \
	else echo "not root: the image is not built and tests/e2e/test_image.py is skipped (sudo make image)"; fi

test: lint toolchain test-image
	bash scripts/pytest-strict $(BIN)/python -m pytest $(PYTEST_ARGS)

# Mutation testing of controller/, observe/ and render/ with the unit tests alone (tests/README.md):
# minutes per package, so not part of `test`. One package: `bash scripts/mutation observe`.
.PHONY: mutation
mutation: $(STAMP)
	bash scripts/mutation

# Numbers, not pass/fail: the operator beside the floor (reaction, burst), API calls per run, memory at
# scale, restart, idle CPU (results and picture in benchmarks/results/); then HA failover time.
bench: $(STAMP) toolchain
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/scale_bench.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/operator_bench.py

demo: $(STAMP)
	bash scripts/demo

demo-down:
	bash scripts/demo-down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
