# syntax=docker/dockerfile:1.7
# The operator image: kopf, the agentpersistence operator and its pod-injection webhook.
#
#   docker build -f docker/operator.Dockerfile -t agentpersistence/operator:0.1.0 .
#
# Built from the repository root (the three local distributions are installed, pinned by
# requirements/constraints.txt). Runs as 65532:65532, the user the chart's securityContext
# names; nothing is written to the root filesystem, which the chart mounts read-only.
ARG PYTHON_IMAGE=python:3.13-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY client/ client/
COPY sidecar/ sidecar/
COPY operator/ operator/
RUN python -m venv /opt/agentpersistence \
 && /opt/agentpersistence/bin/pip install --constraint requirements/constraints.txt \
      ./client ./sidecar ./operator

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentpersistence-operator" \
      org.opencontainers.image.description="Provisions AgentPersistence storage and injects the sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/agentpersistence /opt/agentpersistence
ENV PATH=/opt/agentpersistence/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# kopf names the operator after its user (getpass), which needs an entry for the uid.
RUN groupadd --system --gid 65532 agentpersistence \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin agentpersistence
USER 65532:65532
# `kopf run` with the operator's and the webhook's handlers; every kopf run option applies.
ENTRYPOINT ["agentpersistence-operator"]
CMD ["--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
