# syntax=docker/dockerfile:1
# The FineTuneJob operator image: `docker build -t finetune-operator .` from the repository root.
# Ports: 8080 kopf's health endpoint (/healthz), 9090 Prometheus metrics (both set by the default CMD).
# BASE_IMAGE: any image with python3.11 and its venv module on PATH; `make image` passes a Debian
# bookworm made with debootstrap where no registry can be reached (python in /usr/bin, not /usr/local/bin).
ARG BASE_IMAGE=python:3.11-slim

# --- build: the same install as the README (`pip install .`), into a virtualenv copied below ---
FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

# --- runtime: no compilers, no sources, no pip cache; a non-root numeric user ---
FROM ${BASE_IMAGE}

# This checkout records no remote: pass the real repository with --build-arg IMAGE_SOURCE=<url>.
ARG IMAGE_SOURCE="https://github.com/aidaptiv/finetune-operator"
LABEL org.opencontainers.image.title="finetune-operator" \
      org.opencontainers.image.description="Kubernetes operator for fine-tuning LLMs with Phison aiDAPTIV+ (FineTuneJob custom resource)" \
      org.opencontainers.image.source="${IMAGE_SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}"

RUN groupadd --system --gid 10001 finetune \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin finetune

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
EXPOSE 8080 9090

ENTRYPOINT ["finetune-operator", "run"]
# Replacing CMD (for instance with `--namespace ml`) drops these: repeat them if you want the ports served.
CMD ["--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]
