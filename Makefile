# facewire: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help setup system-deps run gui bench linkcheck perf claims scale attack soak fuzz serve run-rest run-grpc test test-fast pytest lint format proto \
        screenshot fixtures docker-lint docker-engine docker-engine-stop docker-base docker-up docker-down docker-smoke docker-bench constraints clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "facewire needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[gui,bench,distributed,attack,asgi,dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install facewire with the GUI OpenCV wheel and dev tools

system-deps: ## Install the Debian packages the tests need (only those missing)
	./scripts/system-deps.sh

run: setup ## The main job: both services + the GUI (or, with no display, a headless comparison; ARGS="--network cable")
	-./scripts/system-deps.sh link
	$(BIN)/python -m client.lab $(ARGS)

bench: setup ## The benchmark: start the services, run the sweep, write a report (ARGS="...")
	-./scripts/system-deps.sh link h2load
	$(BIN)/python -m client.bench --start-services --inprocess $(ARGS)

linkcheck: setup ## What the link engine carries here, and each network profile's link checked (root; ARGS="--network lte")
	./scripts/system-deps.sh link
	$(BIN)/python -m client.network $(ARGS)

perf: setup ## The performance targets as in-run ratios, about 7 minutes (ARGS="--quick")
	$(BIN)/python -m client.bench.perf $(ARGS)

claims: setup ## Test the seeds' claims about REST and gRPC, one experiment each; writes claims-results/ (root for links)
	-./scripts/system-deps.sh link tls h2load
	$(BIN)/python -m client.bench.claims $(ARGS)

scale: setup ## Two replicas of each service behind nginx: balancing per request vs per connection, the proxy's cost, a replica killed
	./scripts/system-deps.sh nginx
	$(BIN)/python -m client.scale $(ARGS)

attack: setup ## Protocol-level attacks on both services beside a well-behaved client; prints the table (ARGS="--quick")
	./scripts/system-deps.sh tls
	$(BIN)/python -m client.attack $(ARGS)

soak: setup ## Both services under mixed traffic for 10 minutes, then an audit of every save (ARGS="--duration 60")
	$(BIN)/python -m client.bench.soak $(ARGS)

fuzz: setup ## Coverage-guided fuzzing of the decode path with atheris (ARGS="-max_total_time=600")
	$(BIN)/python fuzz/fuzz_decode.py $(or $(ARGS),-max_total_time=120 -rss_limit_mb=1024)

gui: setup ## The GUI alone, against services already running (ARGS="--source sample --mode both")
	$(BIN)/python -m client $(ARGS)

serve: setup ## Both services locally, no Docker; Ctrl-C stops both
	$(BIN)/python -m facewire.serve

run-rest: setup ## The REST service alone (127.0.0.1:8001)
	$(BIN)/python -m rest_service

run-grpc: setup ## The gRPC service alone (127.0.0.1:50051)
	$(BIN)/python -m grpc_service

test: setup system-deps lint pytest ## Everything CI runs: lint, then the tests

test-fast: setup ## Units only: no server, engine, network namespace or browser (under a minute)
	$(BIN)/python -m pytest -m unit

pytest: setup
	$(BIN)/python -m pytest

lint: setup docker-lint ## ruff (format and check), mypy, hadolint, docker-compose config
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: setup ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

proto: setup ## Regenerate facewire/v1 and facewire/oip/v2 from proto/ (committed; a test checks freshness)
	$(BIN)/python scripts/gen_proto.py

screenshot: setup ## Refresh docs/img/gui-both.png from the Xvfb GUI test's own run
	mkdir -p docs/img
	FACEWIRE_SCREENSHOT_OUT=docs/img/gui-both.png $(BIN)/python -m pytest -q \
	  tests/test_gui.py::test_gui_modes_save_reset_quit

fixtures: setup ## Rebuild the committed test images from scikit-image's astronaut
	$(BIN)/python scripts/make_fixtures.py

docker-lint: setup ## Lint the Dockerfile and validate docker-compose.yml, no engine needed
	$(BIN)/hadolint Dockerfile
	./scripts/compose.sh -- config -q

docker-engine: ## Start containerd and dockerd in the background when no engine answers (root)
	./scripts/docker-engine.sh start

docker-engine-stop: ## Stop the engine make docker-engine started
	./scripts/docker-engine.sh stop

docker-base: ## Build facewire-base:bookworm with debootstrap, for hosts with no registry (root)
	./scripts/docker-base.sh

docker-up: ## Build and start both services in Docker, return once healthy (Compose v2 or v1)
	./scripts/compose.sh up

docker-down: ## Stop both containers (each drains), check they exited 0, remove them
	./scripts/compose.sh down

docker-smoke: ## Where Docker runs: docker-up, one saved request per protocol, docker-down
	./scripts/docker-smoke.sh

docker-bench: setup ## Local processes vs containers (published ports, host network), interleaved
	$(BIN)/python -m client.bench.placement $(ARGS)

clean: ## Remove the venv and caches (not ./storage)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

constraints: setup ## Re-resolve docker/constraints.txt (every pin the images install) from PyPI
	$(BIN)/python scripts/constraints.py --write
