# syntax=docker/dockerfile:1.7
# The sidecar image the webhook injects: `agentpersistence-sidecar --socket PATH --config FILE`.
#
#   docker build -f docker/sidecar.Dockerfile -t agentpersistence/sidecar:0.1.0 .
#
# Built from the repository root (client + sidecar distributions, pinned by
# requirements/constraints.txt). Runs as 65532:65532, the user the injection's securityContext
# names, on a read-only root filesystem: the socket lives in the pod's in-memory emptyDir.
# The slim Debian base keeps coreutils: the injected startup probe runs `test -S <socket>`.
ARG PYTHON_IMAGE=python:3.13-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY client/ client/
COPY sidecar/ sidecar/
RUN python -m venv /opt/agentpersistence \
 && /opt/agentpersistence/bin/pip install --constraint requirements/constraints.txt \
      ./client ./sidecar

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentpersistence-sidecar" \
      org.opencontainers.image.description="LangGraph persistence for agents over a unix socket" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/agentpersistence /opt/agentpersistence
ENV PATH=/opt/agentpersistence/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# the uid the injection runs it as has a name, as tools and libraries expect.
RUN groupadd --system --gid 65532 agentpersistence \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin agentpersistence
USER 65532:65532
ENTRYPOINT ["agentpersistence-sidecar"]
CMD ["--socket", "/var/run/agentpersistence/sidecar.sock", "--config", "/etc/agentpersistence/sidecar.yaml"]
