# edgefleet: one Makefile, the same targets on a laptop and in CI.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format typecheck bench clean system-deps

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Debian: apt-get install python3 python3-venv)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use as real peers: ffmpeg (ffprobe reads MP4 over HTTP), curl.
system-deps:
	@if ! command -v ffprobe >/dev/null || ! command -v curl >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg curl >/dev/null; \
		else \
			echo "install ffmpeg and curl: sudo apt-get install ffmpeg curl"; exit 1; \
		fi; \
	fi

demo: $(STAMP)
	$(BIN)/python -m demo.fleet $(DEMO_ARGS)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

# Lint: ruff, mypy --strict, who may import what (import-linter contracts in pyproject.toml),
# and the test tree mirroring the code (tests/mirror.py).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m tests.mirror

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.edge

# The playback load test against `make demo`, which must be running in another terminal
# (steering on http://127.0.0.1:7080). Results: bench/results/loadtest-<UTC>/.
# LOADTEST_ARGS, e.g.: make loadtest LOADTEST_ARGS="--users 20 --duration 2m"
.PHONY: loadtest
loadtest: $(STAMP)
	$(BIN)/python -m bench.loadtest $(LOADTEST_ARGS)

# The chaos drill: a local fleet broken on purpose under playback load (bench/chaos/), about
# 4 minutes. Results: bench/results/chaos-<UTC>/; exits 1 when a target is missed.
# CHAOS_ARGS, e.g.: make chaos CHAOS_ARGS="--seed 7 --users 20 --duration 300"
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

# Hostile clients against one edge (bench/hostile/: slowhttptest slowloris, slow read and
# Range abuse, 5,000 idle connections) while a normal client measures its latency; two rounds,
# ~5 min. Needs slowhttptest (apt-get install slowhttptest; Python attackers otherwise); as
# root the attackers are held to 25 % of one core in a CPU cgroup (they stand for other machines).
HOSTILE_ARGS ?= --rounds 2
.PHONY: hostile
hostile: $(STAMP)
	$(BIN)/python -m bench.hostile $(HOSTILE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Fuzz a live edge and steering with hypothesis-built raw requests, ≥ 10,000 cases each
# (`make test` runs a few hundred). FUZZ_EXAMPLES raises or lowers the budget.
FUZZ_EXAMPLES ?= 10000
.PHONY: fuzz
fuzz: $(STAMP)
	EDGEFLEET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) EDGEFLEET_FUZZ_REPORT=1 $(BIN)/python -m pytest -s \
		-o timeout=3600 tests/edge/test_server_fuzz.py tests/steering/test_app_fuzz.py
