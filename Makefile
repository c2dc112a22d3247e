# make run   create .venv and run the whole pipeline on the embedded default data
# make test  create .venv and run all tests
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export UV_COMPILE_BYTECODE := 1
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup run test lock clean browser

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.lock
	@# animal-mnist is installed for its data files only; its declared deps (full tensorflow) are not needed.
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps animal-mnist==0.4
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	@touch $@

run: setup
	@# outside a git repository (a downloaded copy), DVC runs with core.no_scm
	@git rev-parse --git-dir >/dev/null 2>&1 || dvc config core.no_scm true
	dvc repro
	catdog summary

# The linter and the format check first (seconds; pyproject.toml [tool.ruff]), then one pytest
# worker per core (at most 4: each may hold TensorFlow), a test file per worker at a time.
test: setup
	ruff check .
	ruff format --check .
	pytest -n auto --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

# Debian's Chromium and its driver, for the serve page's browser test (skipped where absent). Needs root.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

lock:
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.lock
	@# the container's runtime requirements, within the pipeline's versions
	$(BIN)/uv pip compile --quiet --python-version 3.11 deployments/container/requirements-serve.in \
	  -c requirements.lock -o deployments/container/requirements-serve.lock

clean:
	rm -rf $(VENV)

# Prefect: a local server + worker, the deployments, and a run (see README "Orchestration").
.PHONY: prefect-up deploy nightly prefect-down
prefect-up: setup
	deployments/local.sh up
deploy: setup
	deployments/local.sh deploy
nightly: setup
	prefect deployment run train/nightly
prefect-down:
	deployments/local.sh down

# Speed and memory against plain baselines, measured in one run (bench/results/bench.json).
.PHONY: bench
bench: setup
	python bench/run.py $(BENCH_ARGS)

# Time to accuracy of the real-photo recipe with each lever alone, over seeds (hours: see bench/levers.py).
.PHONY: levers
levers: setup
	python bench/levers.py $(LEVERS_ARGS)
