# One entry point for people and CI. `make dev` runs the bridge on embedded defaults;
# `make test` runs the whole suite (the same command .ci/run uses). Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test check lint typecheck fmt lock clean deploy-check

$(BIN)/bridge: pyproject.toml requirements/pip.lock requirements/dev.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/pip.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(BIN)/bridge

dev: $(BIN)/bridge  ## run the bridge locally: SQLite, built-in Sync emulator, generated secret
	$(BIN)/bridge dev

test: $(BIN)/bridge  ## lint, type-check and run every test (PostgreSQL tests included)
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/ruff check bridge tests bench
	$(BIN)/mypy
	$(BIN)/pytest --cov --cov-report=term
	$(BIN)/coverage report --include='bridge/core/*' --fail-under=98

fmt: $(BIN)/bridge
	$(BIN)/ruff format bridge tests bench
	$(BIN)/ruff check --fix bridge tests bench

lock:  ## re-pin requirements/*.lock from pyproject.toml
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements/runtime.lock -q
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock -q

deploy-check:  ## render, validate and scan the Kubernetes overlays; lint the Dockerfile
	bash .ci/deploy-check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
